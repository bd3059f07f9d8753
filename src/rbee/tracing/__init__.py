"""Optional OpenTelemetry traces of a request across queen → hive → worker (docs/tracing.md).

Off unless an OTLP endpoint is configured (`config.traces_endpoint`). Off, nothing here but
`config` is imported, no tracer provider exists, no middleware is installed and no header is
added: the callers hold `None` instead of a `tracer.Tracing` and test it once per request.
"""
