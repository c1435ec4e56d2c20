# lienthong gateway: `docker build -t lienthong . && docker run -p 8080:8080 -v $PWD/etc:/etc/lienthong lienthong`
FROM python:3.11-slim

# xmlsec1/poppler are for interop checks only; the gateway itself needs nothing beyond Python wheels
# but the font its embedded civil-status sandbox writes birth certificates in.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 lienthong
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY connectors ./connectors
COPY signing ./signing
COPY schemas ./schemas
RUN pip install --no-cache-dir . && rm -rf /root/.cache

USER lienthong
WORKDIR /home/lienthong
ENV LIENTHONG_CONFIG=/etc/lienthong/lienthong.toml \
    LIENTHONG_GATEWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
# /healthz at the configured listen address, over HTTPS when [gateway] tls_cert is set. A first
# start creates the store (or migrates PostgreSQL's) and, for the sandboxes, a test PKI: on a slow
# host that takes a while, and probes failing meanwhile must not count. The check waits 5 s for an
# answer: 10 s leaves it the interpreter's start too, and its own one-line reason.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "gateway.healthcheck"]
ENTRYPOINT ["lienthong"]
CMD ["serve"]
