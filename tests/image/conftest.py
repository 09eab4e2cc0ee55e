"""The container image tests. `make image-test` builds the image with runtime/image/build.sh and
names it in MLFLEET_IMAGE; without that variable a plain `pytest` leaves test_image.py out of
collection (there is no image to test), while the requirements check always runs."""
from __future__ import annotations

import functools
import os
import resource
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

IMAGE_ENV = "MLFLEET_IMAGE"
IMAGE = os.environ.get(IMAGE_ENV, "")
# crun fails on hybrid cgroups; runc with cgroupfs works as root (what CI runs as).
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]
REPOSITORY = "/models"
PUBLIC_KEY = "/keys/manifest-public-key.pem"  # the manifest's verification key, mounted beside the models
# podman's default rlimits (about a million files and processes) are more than root without
# CAP_SYS_RESOURCE may set, and runc then refuses to start: ask for what this process holds.
_, _NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)
ULIMITS = ["--ulimit", f"nofile={_NOFILE}:{_NOFILE}", "--ulimit", "nproc=4096:4096"]

collect_ignore = [] if IMAGE else ["test_image.py"]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"image: runs the built runtime image with podman (`make image-test`, "
                                       f"${IMAGE_ENV} names the image)")


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


@dataclass
class Container:
    """A runtime container on the host network: the ports are the host's, chosen free."""
    name: str
    http_port: int
    grpc_port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def state(self, field: str) -> str:
        return podman("inspect", "--format", "{{.State.%s}}" % field, self.name).stdout.strip()

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.state("Status") == "exited":
                raise RuntimeError(f"container {self.name} exited with {self.state('ExitCode')}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"container {self.name} not ready within {timeout_s} s:\n{self.logs()}")

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def start_container(name: str, repository: Path, *extra_args: str, public_key: Path) -> Container:
    """Run the image the way the GPU pools do: unprivileged, read-only root, /tmp the only
    writable place, the model repository and the manifest's public key mounted read-only."""
    from mlfleet.runtime.process import free_port

    container = Container(name, free_port(), free_port())
    container.remove()  # a leftover of an interrupted run
    try:
        podman("run", "--detach", "--name", name, "--network=host", *ULIMITS, "--read-only", "--tmpfs", "/tmp",
               "--user", "10001", "--cap-drop=ALL", "--security-opt=no-new-privileges",
               "--volume", f"{repository}:{REPOSITORY}:ro", "--volume", f"{public_key}:{PUBLIC_KEY}:ro", IMAGE,
               "--model-repository", REPOSITORY, "--manifest-public-key", PUBLIC_KEY,
               "--http-port", str(container.http_port), "--grpc-port", str(container.grpc_port), *extra_args)
        container.wait_ready()
    except BaseException:
        container.remove()
        raise
    return container


@pytest.fixture(scope="session")
def image() -> str:
    return IMAGE


@pytest.fixture(scope="session")
def run_podman():
    """podman(*args, timeout=60, check=True) -> CompletedProcess, with this machine's runtime flags."""
    return podman


@pytest.fixture(scope="session")
def ulimits() -> list[str]:
    """The rlimit flags every `podman run` here needs."""
    return ULIMITS


@pytest.fixture(scope="session")
def image_public_key(tmp_path_factory, manifest_key) -> Path:
    """The session's manifest public key where uid 10001 can read it."""
    folder = tmp_path_factory.mktemp("image-key")
    path = folder / "manifest-public-key.pem"
    path.write_bytes(manifest_key.public_key_path.read_bytes())
    folder.chmod(0o755)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="session")
def start(image_public_key):
    """start(name, repository, *runtime_args) -> a ready Container verifying against the session's
    manifest key (the caller removes it)."""
    return functools.partial(start_container, public_key=image_public_key)


@pytest.fixture(scope="session")
def image_repo(tmp_path_factory, manifest_key) -> Path:
    from mlfleet.runtime.examples import write_example_repository

    root = tmp_path_factory.mktemp("image-repository")
    write_example_repository(root, models=("mlp", "mlp-large"), signing_key=manifest_key.signing_key)
    # pytest's folders are private to root; the container reads them as uid 10001
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


@pytest.fixture(scope="module")
def container(image_repo, image_public_key):
    """One container for the read-only checks."""
    started = start_container(f"mlfleet-image-test-{os.getpid()}", image_repo,
                              "--region", "eu-west-1", "--canary-interval", "2", public_key=image_public_key)
    yield started
    started.remove()
