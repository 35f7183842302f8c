using Microsoft.Extensions.Logging;
using CycleQD.Testing;

namespace CycleQD.Runs.Tests;

/// <summary>A host's ILogger receives a run's notices and one entry per generation.</summary>
public sealed class RunLoggingTests
{
    private sealed class CapturingLogger : ILogger
    {
        public List<(LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception)));
    }

    [Fact]
    public async Task AttachedLogger_GetsOneEntryPerGeneration_AndWarningsAtWarningLevel_UntilDetached()
    {
        using var dir = new TempDir();
        string exp = Experiments.Write(dir, "exp.yaml", Experiments.Synthetic(generations: 6));
        var logger = new CapturingLogger();
        using (var s = RunSession.Start(exp, dir.File("run"), 6, null, notice: RunLogging.Notices(logger)))
        {
            var attached = RunLogging.Attach(s, logger);
            await s.InitializeAsync(TestContext.Current.CancellationToken);
            s.Engine.GenerationCompleted += r => { if (r.Generation == 3) attached.Dispose(); };
            Assert.True(await s.RunAsync(TestContext.Current.CancellationToken));
        }
        var generations = logger.Entries.Where(e => e.Message.StartsWith("generation ", StringComparison.Ordinal)).ToList();
        // Generations 0-3 are logged (3 is logged before the handler that detaches runs), 4 and 5 are not.
        Assert.Equal(["generation 0", "generation 1", "generation 2", "generation 3"], generations.Select(g => g.Message.Split(':')[0]));
        Assert.All(generations, g => Assert.Equal(LogLevel.Information, g.Level));
        Assert.Contains("quality task a", generations[0].Message);
        Assert.Matches(@"scores a 0\.\d+, b 0\.\d+, c 0\.\d+", generations[0].Message);

        RunLogging.Notices(logger)("warning: something to look at");
        RunLogging.Notices(logger)("notice: something to know");
        Assert.Equal((LogLevel.Warning, "warning: something to look at"), logger.Entries[^2]);
        Assert.Equal((LogLevel.Information, "notice: something to know"), logger.Entries[^1]);
    }
}
