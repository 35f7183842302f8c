namespace CycleQD.Cpu.Tests;

/// <summary>Float64 helpers the kernel tests compare against.</summary>
internal static class Numerics
{
    /// <summary>‖got − ref‖₂ / ‖ref‖₂ (or ‖got‖₂ when ref is all zero); NaN anywhere gives +∞.</summary>
    public static double RelativeError(IReadOnlyList<float> got, IReadOnlyList<double> reference)
    {
        double num = 0, den = 0;
        for (int i = 0; i < got.Count; i++)
        {
            if (float.IsNaN(got[i])) return double.PositiveInfinity;
            double d = got[i] - reference[i];
            num += d * d;
            den += reference[i] * reference[i];
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>m × r matrix (row-major) with orthonormal columns: Gaussian, then modified Gram–Schmidt twice, in float64.</summary>
    public static double[] Orthonormal(System.Random rng, int m, int r)
    {
        var q = new double[m * r];
        for (int i = 0; i < q.Length; i++) q[i] = Gaussian(rng);
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < r; j++)
            {
                for (int p = 0; p < j; p++)
                {
                    double dot = 0;
                    for (int i = 0; i < m; i++) dot += q[i * r + j] * q[i * r + p];
                    for (int i = 0; i < m; i++) q[i * r + j] -= dot * q[i * r + p];
                }
                double norm = 0;
                for (int i = 0; i < m; i++) norm += q[i * r + j] * q[i * r + j];
                norm = Math.Sqrt(norm);
                for (int i = 0; i < m; i++) q[i * r + j] /= norm;
            }
        return q;
    }

    /// <summary>U diag(s) Vᵀ (m × n) in float64; U is m × r, V is n × r, both row-major.</summary>
    public static double[] Compose(double[] u, double[] s, double[] v, int m, int n, int r)
    {
        var a = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double acc = 0;
                for (int c = 0; c < r; c++) acc += u[i * r + c] * s[c] * v[j * r + c];
                a[i * n + j] = acc;
            }
        return a;
    }

    public static double Gaussian(System.Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
}
