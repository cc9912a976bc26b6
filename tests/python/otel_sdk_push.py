"""The OpenTelemetry Python SDK (opentelemetry-exporter-otlp-proto-grpc) pushes a gauge, a
monotonic counter, an explicit-bucket histogram and an exponential histogram (a View with
ExponentialBucketHistogramAggregation) with resource host.name into fleetset's OTLP receiver:
one collection in each of three consecutive 1-second windows, then force_flush twice and shutdown
(which exports the unchanged state again). The exponential histogram gets the values 1..=100 in
the first window only, so its cumulative quantiles are 50, 90 and 99 in every window.

usage: otel_sdk_push.py ENDPOINT [CA_FILE CERT_FILE KEY_FILE]  (with the files: over TLS with a
client certificate, ENDPOINT https://…)
"""
import sys, time
import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

if len(sys.argv) > 4:
    files = [open(p, "rb").read() for p in sys.argv[2:5]]
    exporter = OTLPMetricExporter(endpoint=sys.argv[1], insecure=False, credentials=grpc.ssl_channel_credentials(
        root_certificates=files[0], certificate_chain=files[1], private_key=files[2]))
else:
    exporter = OTLPMetricExporter(endpoint=sys.argv[1], insecure=True)
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(
    resource=Resource.create({"host.name": "otel-sdk-host", "service.name": "checkout"}),
    metric_readers=[reader],
    views=[View(instrument_name="app.payload.size",
                aggregation=ExponentialBucketHistogramAggregation(max_size=160, max_scale=20))])
meter = provider.get_meter("fleetset-interop")
requests = meter.create_counter("app.requests")
latency = meter.create_histogram("app.latency", unit="ms")
cpu = meter.create_gauge("system.cpu.utilization")
payload = meter.create_histogram("app.payload.size", unit="By")


def next_window():
    time.sleep(1.0 - (time.time() % 1.0) + 0.05)


next_window()
for i, (add, lat, util) in enumerate([(5, [3.0, 7.0], 0.25), (7, [20.0], 0.5), (8, [1.0, 2.0], 0.75)]):
    requests.add(add)
    for v in lat:
        latency.record(v)
    cpu.set(util)
    if i == 0:
        for v in range(1, 101):
            payload.record(float(v))
    assert provider.force_flush(10_000), "export failed"
    if i < 2:
        next_window()
assert provider.force_flush(10_000)
provider.shutdown()
print("pushed")
