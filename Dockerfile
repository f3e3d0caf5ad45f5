# One image, two deployables: `etcdop operator` and `etcdop agent` (the member pods' sidecar).
# The agent restores snapshots with etcdutl and checks them with a one-member etcd (the restore
# drill), so the etcd tools of the supported line come along.
#
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module; the default is the
# official slim image. ETCD_IMAGE is where etcd, etcdctl and etcdutl are taken from
# (/usr/local/bin, as the upstream image has them). `make image` (bench/image.sh) builds it with
# neither a registry nor a package index: a locally made base, a local etcd image, and a wheelhouse
# built on the host in .wheels/.
ARG BASE_IMAGE=python:3.11-slim
ARG ETCD_IMAGE=gcr.io/etcd-development/etcd:v3.6.16

FROM ${ETCD_IMAGE} AS etcd

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY . .
# A wheelhouse in .wheels/ is installed offline; without one the package index is used.
RUN python3 -m venv /opt/etcdop \
 && if ls .wheels/etcdop-*.whl >/dev/null 2>&1; then \
      /opt/etcdop/bin/pip install --no-cache-dir --no-index --find-links .wheels etcdop; \
    else \
      /opt/etcdop/bin/pip install --no-cache-dir .; \
    fi \
 && /opt/etcdop/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/etcdop/bin/python -c "import etcdop.cli, etcdop.agent.main, etcdop.operator.main"

FROM ${BASE_IMAGE}
COPY --from=build /opt/etcdop /opt/etcdop
COPY --from=etcd /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /usr/local/bin/
# Bytecode was compiled at install time; nothing is written at run time, so the root filesystem
# may be read-only (the agent's scratch space is the pod's emptyDir volumes).
ENV PATH=/opt/etcdop/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user, so `runAsNonRoot` can be checked without a passwd entry.
USER 65532:65532
ENTRYPOINT ["etcdop"]
CMD ["operator"]
