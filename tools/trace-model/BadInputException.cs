namespace KvmApf.Tracing;

/// <summary>Bad input to a tool (bench-contract.md): reported as one line, <c>TOOL: MESSAGE</c>, exit code 2.</summary>
public sealed class BadInputException(string message) : Exception(message)
{
    /// <summary>The usual shape: the option, then what was wrong with it.</summary>
    public static BadInputException For(string option, string problem) => new($"{option}: {problem}");
}
