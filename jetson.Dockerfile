# linegate on a Jetson Orin (JetPack 6: L4T r36, Ubuntu 22.04, Python 3.10, CUDA 12.6, TensorRT 10.3).
#
# NOT BUILT HERE: this project's machines are x86-64 with no access to nvcr.io, so this file has
# never been built or run. It is written against NVIDIA's documented l4t-jetpack images.
#
# Build on the Jetson (or with buildx for linux/arm64):
#   docker build -f jetson.Dockerfile -t linegate:jetson .
# Run (the unit in systemd/ stays the supervisor of record; see "Watchdog" below):
#   docker run --rm --runtime nvidia --network host --ipc host \
#     --ulimit memlock=-1 --ulimit rtprio=20 --cap-drop ALL \
#     -v /etc/linegate:/etc/linegate:ro -v /var/log/linegate:/var/log/linegate \
#     -v /var/lib/linegate/engines:/var/lib/linegate/engines:ro \
#     linegate:jetson
#   --runtime nvidia     mounts the Jetson GPU device nodes and CUDA/TensorRT libraries
#   --network host       GigE Vision cameras use broadcast discovery and high-rate UDP streams
#   --ipc host           the frame ring is POSIX shared memory in /dev/shm (or --shm-size=256m)
#   --ulimit memlock=-1  pinned (page-locked) memory for CUDA and the registered ring
#   --ulimit rtprio=20   SCHED_FIFO for the inference loop without CAP_SYS_NICE
#
# Watchdog: either run the container from a systemd unit (ExecStart=/usr/bin/docker run ... with
# Type=notify and NotifyAccess=all, and bind-mount the notify socket:
#   -e NOTIFY_SOCKET=/run/systemd/notify -v /run/systemd/notify:/run/systemd/notify
# plus -e WATCHDOG_USEC so linegate pings), or let Docker restart it: --restart on-failure
# (a stalled loop then is caught only by linegate's own supervisor, not by a watchdog).
# TensorRT engines must be built on the same Jetson with the same TensorRT version (engines/README.md).

FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# python3-libnvinfer (TensorRT's Python module) and CUDA come with the base image. The two packages
# are Ubuntu 22.04's own; exact versions are not pinned because the archive drops old ones at each
# security update, which would break the build (the base image tag pins the release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*

# --system-site-packages: the image's tensorrt module (/usr/lib/python3.10/dist-packages) stays
# visible inside the venv; everything else comes pinned from pyproject.toml.
RUN python3 -m venv --system-site-packages /opt/linegate/venv
COPY pyproject.toml setup.py MANIFEST.in README.md /src/
COPY linegate /src/linegate
COPY config /src/config
COPY engines /src/engines
RUN /opt/linegate/venv/bin/pip install "/src[gpu]" \
    && /opt/linegate/venv/bin/python -c "import tensorrt, linegate; print('tensorrt', tensorrt.__version__)"

# The same unprivileged user as the systemd unit; video/render own the GPU nodes on the host.
RUN groupadd --system linegate \
    && useradd --system --gid linegate --groups video --no-create-home --shell /usr/sbin/nologin linegate \
    && install -d -o linegate -g linegate -m 0750 /var/log/linegate /var/lib/linegate /var/cache/linegate \
    && install -d -m 0755 /etc/linegate
USER linegate
# numba compiles the CPU preprocessing kernels at the first start (about a second) and keeps them here;
# in a container started from the image again, the first start compiles again (mount a volume to keep them).
ENV PATH=/opt/linegate/venv/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/linegate/numba

# SIGTERM: graceful stop (drain the ring, deliver or report pending rejects, outputs safe) within
# supervisor.stop_timeout_ms (20 s): give docker stop more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["linegate"]
CMD ["run", "--config", "/etc/linegate/linegate.toml"]
# docker stop --time 30 ...   (the default 10 s would cut the drain short)
