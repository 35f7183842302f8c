namespace CycleQD.Runs.Families;

/// <summary>
/// The files of a model folder, other than its weights, that a model made from it carries: an
/// exported elite or a merge copies them next to its own weights so the folder loads on its own.
/// </summary>
/// <param name="Directory">Absolute path of the source folder.</param>
/// <param name="ConfigPath">Its config.json (copied, with torch_dtype updated to the written weights).</param>
/// <param name="CompanionFiles">The other files copied unchanged (tokenizer files, preprocessor settings), absolute paths, in the order they are written.</param>
public sealed record ModelFolderFiles(string Directory, string ConfigPath, IReadOnlyList<string> CompanionFiles);
