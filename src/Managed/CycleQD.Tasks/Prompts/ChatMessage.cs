namespace CycleQD.Tasks.Prompts;

/// <summary>One chat message.</summary>
/// <param name="Role">"system", "user" or "assistant".</param>
/// <param name="Content">The message text.</param>
public sealed record ChatMessage(string Role, string Content);
