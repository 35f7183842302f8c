using System.Runtime.CompilerServices;
using CycleQD.Tasks.Database;

namespace CycleQD.Tasks.Tests;

/// <summary>
/// The test executable doubles as the process that owns folders and is then SIGKILLed: with
/// <see cref="Variable"/> set it takes what the variable names, prints one line per item, and
/// sleeps until it is killed, before any test runs.
/// </summary>
internal static class OwnedTempFolderChild
{
    /// <summary>"folder &lt;root&gt;": a folder under root plus two recorded processes, one naming the folder and one not; "mariadb": a private server in $TMPDIR.</summary>
    public const string Variable = "CYCLEQD_TEST_OWNED_FOLDER_CHILD";

#pragma warning disable CA2255 // a module initializer is the only hook that runs before the test platform's generated Main
    [ModuleInitializer]
    internal static void RunIfChild()
#pragma warning restore CA2255
    {
        string? what = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(what)) return;
        try
        {
            if (what.StartsWith("folder ", StringComparison.Ordinal))
            {
                string root = what["folder ".Length..];
                string folder = OwnedTempFolders.Create("cycleqd-test-child-", root);
                File.WriteAllText(Path.Combine(folder, "payload"), "x");
                using var naming = System.Diagnostics.Process.Start("tail", ["-n", "0", "-f", Path.Combine(folder, "payload")]);
                using var notNaming = System.Diagnostics.Process.Start("sleep", ["600"]);
                OwnedTempFolders.RecordProcess(folder, naming.Id);
                OwnedTempFolders.RecordProcess(folder, notNaming.Id);
                Console.WriteLine(folder);
                Console.WriteLine(naming.Id);
                Console.WriteLine(notNaming.Id);
            }
            else if (what == "mariadb")
            {
                var server = MariaDbServer.StartAsync().GetAwaiter().GetResult();
                Console.WriteLine(Path.GetDirectoryName(Path.GetDirectoryName(server.SocketPath)));
                Console.WriteLine(server.ProcessId);
            }
            else
            {
                Console.Error.WriteLine($"unknown {Variable} value '{what}'");
                Environment.Exit(2);
            }
        }
        catch (Exception e)
        {
            Console.Error.WriteLine(e);
            Environment.Exit(3);
        }
        Thread.Sleep(Timeout.Infinite);
    }
}
