"""azure-core's own requests transport, sending one https origin to a local http stand-in.

Only the wire address changes: the SDK's policies (which refuse bearer tokens over http) keep
seeing https, and every request really crosses a socket to the stand-in."""

from azure.core.pipeline.transport import RequestsTransport


class RedirectTransport(RequestsTransport):
    def __init__(self, origin: str, local: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.origin = origin
        self.local = local

    def send(self, request, **kwargs):
        original = request.url
        request.url = original.replace(self.origin, self.local, 1)
        try:
            return super().send(request, **kwargs)
        finally:
            request.url = original
