using CycleQD.Tasks.AgentBenchDb;
using CycleQD.Tasks.Python;

namespace CycleQD.Tasks.Tests;

public sealed class PythonReprTests
{
    [Theory]
    [InlineData(1.0, "1.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234567890123456.0, "1234567890123456.0")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(123.456, "123.456")]
    [InlineData(1e22, "1e+22")]
    [InlineData(2.5e300, "2.5e+300")]
    [InlineData(0.30000000000000004, "0.30000000000000004")]
    public void Float_MatchesPythonRepr(double v, string expected) => Assert.Equal(expected, PythonRepr.Float(v));

    [Theory]
    [InlineData("abc", "'abc'")]
    [InlineData("it's", "\"it's\"")]
    [InlineData("both ' and \"", "'both \\' and \"'")]
    [InlineData("a\nb\\c\t", "'a\\nb\\\\c\\t'")]
    [InlineData("Montréal", "'Montréal'")]
    [InlineData("\u0001\u00a0\u2028", "'\\x01\\xa0\\u2028'")]
    public void Str_MatchesPythonRepr(string s, string expected) => Assert.Equal(expected, PythonRepr.Str(s));

    [Fact]
    public void Rows_MatchPythonStrOfFetchall()
    {
        Assert.Equal("[]", PythonRepr.Rows([]));
        Assert.Equal("[('a',), ('b',)]", PythonRepr.Rows([["'a'"], ["'b'"]]));
        Assert.Equal("[('a', 1, None)]", PythonRepr.Rows([[PythonRepr.Value("a"), PythonRepr.Value(1L), PythonRepr.Value(DBNull.Value)]]));
        Assert.Equal("Decimal('2.50')", PythonRepr.Value(2.50m));
    }

    [Fact]
    public void Escape_MatchesMysqlRealEscapeString()
    {
        Assert.Equal("a\\'b\\\"c\\\\d\\ne\\rf\\0g\\Z", DbBenchSql.Escape("a'b\"c\\d\ne\rf\0g\x1a"));
    }
}
