using System.Runtime.InteropServices;
using CycleQD.Onnx.Proto;

namespace CycleQD.Onnx.Graph;

/// <summary>ONNX TensorProto.DataType codes used by the engine.</summary>
public enum OnnxElementType
{
    /// <summary>float32.</summary>
    Float = 1,
    /// <summary>int32.</summary>
    Int32 = 6,
    /// <summary>int64.</summary>
    Int64 = 7,
    /// <summary>IEEE half precision.</summary>
    Float16 = 10,
    /// <summary>bfloat16.</summary>
    BFloat16 = 16,
}

/// <summary>One dimension of a graph input/output: a fixed size or a symbolic name.</summary>
public readonly record struct OnnxDim(long? Value, string? Symbol)
{
    /// <summary>A fixed size.</summary>
    public static implicit operator OnnxDim(long value) => new(value, null);
    /// <summary>A symbolic size, e.g. "batch".</summary>
    public static implicit operator OnnxDim(string symbol) => new(null, symbol);
}

/// <summary>
/// An ONNX graph under construction (standard domain, one opset) and its serialization to a
/// ModelProto. Values are referred to by name; the single-output Node overload returns the name of its first output.
/// Nodes of another operator domain (ONNX Runtime's com.microsoft contrib operators) are added with
/// <c>DomainNode</c>; each such domain is imported at version 1.
/// </summary>
public sealed class OnnxGraph
{
    private sealed record ValueInfo(string Name, OnnxElementType Type, OnnxDim[] Shape);
    private sealed record Attribute(string Name, object Value);
    private sealed record NodeSpec(string OpType, string[] Inputs, string[] Outputs, Attribute[] Attributes, string Name, string Domain);
    private sealed record Initializer(string Name, OnnxElementType Type, long[] Dims, byte[] Raw);

    private readonly List<ValueInfo> _inputs = [];
    private readonly List<ValueInfo> _outputs = [];
    private readonly List<NodeSpec> _nodes = [];
    private readonly List<Initializer> _initializers = [];
    private readonly Dictionary<string, string> _constantCache = new(StringComparer.Ordinal);
    private readonly SortedSet<string> _domains = new(StringComparer.Ordinal);
    private int _counter;

    /// <summary>Opset of the default ONNX domain the graph is written for.</summary>
    public int Opset { get; }

    /// <summary>Graph name (written into the model).</summary>
    public string Name { get; }

    /// <summary>Starts an empty graph.</summary>
    public OnnxGraph(string name, int opset = 17)
    {
        Name = name;
        Opset = opset;
    }

    /// <summary>Number of nodes so far.</summary>
    public int NodeCount => _nodes.Count;

    /// <summary>Declares a graph input and returns its name.</summary>
    public string Input(string name, OnnxElementType type, params OnnxDim[] shape)
    {
        _inputs.Add(new ValueInfo(name, type, shape));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as a graph output named <paramref name="name"/> (an Identity is added when the names differ).</summary>
    public void Output(string value, string name, OnnxElementType type, params OnnxDim[] shape)
    {
        if (value != name) Node("Identity", [value], [name]);
        _outputs.Add(new ValueInfo(name, type, shape));
    }

    /// <summary>An int64 constant tensor (1-D unless <paramref name="scalar"/>), shared between uses.</summary>
    public string ConstInt64(long[] values, bool scalar = false)
    {
        string key = "i64:" + (scalar ? "s:" : "v:") + string.Join(',', values);
        if (_constantCache.TryGetValue(key, out var n)) return n;
        string name = $"const_{_counter++}";
        _initializers.Add(new Initializer(name, OnnxElementType.Int64, scalar ? [] : [values.Length], MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        _constantCache[key] = name;
        return name;
    }

    /// <summary>A float32 constant tensor of shape <paramref name="dims"/> (row-major values); not shared between calls.</summary>
    public string ConstFloat(float[] values, long[] dims)
    {
        if (dims.Aggregate(1L, (a, b) => a * b) != values.Length)
            throw new ArgumentException($"{values.Length} values do not fill shape [{string.Join(", ", dims)}]");
        string name = $"const_{_counter++}";
        _initializers.Add(new Initializer(name, OnnxElementType.Float, dims, MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
        return name;
    }

    /// <summary>A scalar constant of a floating type (stored as float32, float16 or bfloat16).</summary>
    public string ConstScalar(double value, OnnxElementType type)
    {
        string key = $"f{(int)type}:{value:R}";
        if (_constantCache.TryGetValue(key, out var n)) return n;
        string name = $"const_{_counter++}";
        byte[] raw = type switch
        {
            OnnxElementType.Float => BitConverter.GetBytes((float)value),
            OnnxElementType.Float16 => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)value)),
            OnnxElementType.BFloat16 => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits((float)value) >> 16)),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };
        _initializers.Add(new Initializer(name, type, [], raw));
        _constantCache[key] = name;
        return name;
    }

    /// <summary>Adds a node with one output and returns that output's (fresh) name.</summary>
    public string Node(string opType, string[] inputs, params (string Name, object Value)[] attributes)
    {
        string output = $"{opType.ToLowerInvariant()}_{_counter++}";
        Node(opType, inputs, [output], attributes);
        return output;
    }

    /// <summary>Adds a node with the given outputs.</summary>
    public void Node(string opType, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
    {
        _nodes.Add(new NodeSpec(opType, inputs, outputs, attributes.Select(a => new Attribute(a.Name, a.Value)).ToArray(), $"n{_nodes.Count}_{opType}", ""));
    }

    /// <summary>Adds a node of operator domain <paramref name="domain"/> (e.g. "com.microsoft") with one output and returns that output's name.</summary>
    public string DomainNode(string domain, string opType, string[] inputs, params (string Name, object Value)[] attributes)
    {
        string output = $"{opType.ToLowerInvariant()}_{_counter++}";
        DomainNode(domain, opType, inputs, [output], attributes);
        return output;
    }

    /// <summary>Adds a node of operator domain <paramref name="domain"/> with the given outputs (an empty name leaves an optional output unused).</summary>
    public void DomainNode(string domain, string opType, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
    {
        ArgumentException.ThrowIfNullOrEmpty(domain);
        _domains.Add(domain);
        _nodes.Add(new NodeSpec(opType, inputs, outputs, attributes.Select(a => new Attribute(a.Name, a.Value)).ToArray(), $"n{_nodes.Count}_{opType}", domain));
    }

    /// <summary>Operator domains other than the default one that the graph's nodes use.</summary>
    public IReadOnlyCollection<string> Domains => _domains;

    /// <summary>Serializes the graph as an ONNX ModelProto (IR version 8).</summary>
    public byte[] ToModelBytes()
    {
        var w = new ProtoWriter();
        w.WriteInt64(1, 8); // ir_version
        w.WriteString(2, "CycleQD.Native");
        w.WriteMessage(7, WriteGraph);
        w.WriteMessage(8, o => { o.WriteString(1, ""); o.WriteInt64(2, Opset); });
        foreach (var domain in _domains) w.WriteMessage(8, o => { o.WriteString(1, domain); o.WriteInt64(2, 1); });
        return w.ToArray();
    }

    private void WriteGraph(ProtoWriter g)
    {
        foreach (var node in _nodes) g.WriteMessage(1, n => WriteNode(n, node));
        g.WriteString(2, Name);
        foreach (var init in _initializers)
        {
            g.WriteMessage(5, t =>
            {
                if (init.Dims.Length > 0) t.WritePackedInt64(1, init.Dims);
                t.WriteInt64(2, (int)init.Type);
                t.WriteString(8, init.Name);
                t.WriteBytes(9, init.Raw);
            });
        }
        foreach (var v in _inputs) g.WriteMessage(11, m => WriteValueInfo(m, v));
        foreach (var v in _outputs) g.WriteMessage(12, m => WriteValueInfo(m, v));
    }

    private static void WriteNode(ProtoWriter n, NodeSpec node)
    {
        foreach (var i in node.Inputs) n.WriteString(1, i);
        foreach (var o in node.Outputs) n.WriteString(2, o);
        n.WriteString(3, node.Name);
        n.WriteString(4, node.OpType);
        foreach (var a in node.Attributes) n.WriteMessage(5, m => WriteAttribute(m, a));
        if (node.Domain.Length > 0) n.WriteString(7, node.Domain);
    }

    // AttributeProto.AttributeType: FLOAT 1, INT 2, STRING 3, INTS 7.
    private static void WriteAttribute(ProtoWriter m, Attribute a)
    {
        m.WriteString(1, a.Name);
        switch (a.Value)
        {
            case float f: m.WriteFloat(2, f); m.WriteInt64(20, 1); break;
            case int i: m.WriteInt64(3, i); m.WriteInt64(20, 2); break;
            case long l: m.WriteInt64(3, l); m.WriteInt64(20, 2); break;
            case string s: m.WriteString(4, s); m.WriteInt64(20, 3); break;
            case long[] ls: m.WritePackedInt64(8, ls); m.WriteInt64(20, 7); break;
            case int[] ints: m.WritePackedInt64(8, ints.Select(x => (long)x)); m.WriteInt64(20, 7); break;
            default: throw new ArgumentException($"attribute '{a.Name}': unsupported value type {a.Value.GetType().Name}");
        }
    }

    private static void WriteValueInfo(ProtoWriter m, ValueInfo v)
    {
        m.WriteString(1, v.Name);
        m.WriteMessage(2, type => type.WriteMessage(1, tensor =>
        {
            tensor.WriteInt64(1, (int)v.Type);
            tensor.WriteMessage(2, shape =>
            {
                foreach (var d in v.Shape)
                    shape.WriteMessage(1, dim =>
                    {
                        if (d.Value is long value) dim.WriteInt64(1, value);
                        else dim.WriteString(2, d.Symbol!);
                    });
            });
        }));
    }
}
