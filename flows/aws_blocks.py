"""prefect-aws's S3 blocks, loaded without the rest of the package.

`import prefect_aws` runs the package's `__init__`, which also imports its ECS worker,
its Lambda and Secrets Manager blocks and Prefect's worker base: 159 modules and 12 MB
of the worker's memory (2 % of the service's whole under `make bench`, which its memory
target did not allow), for blocks the S3 stages never use. Here the package is entered
in `sys.modules` as an empty package over its own folder, and only the modules of the
credentials, the client parameters and the bucket are imported into it; the names they
import from the package itself (`s3` takes the credentials from there) are set on it
first. Any later `import prefect_aws` (Prefect loads collections by that name) gets
that package. tests/unit/test_prefect_patches.py fails, naming this module, if a
prefect-aws release moves what this relies on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect_aws import AwsClientParameters, AwsCredentials, S3Bucket

PACKAGE = "prefect_aws"
# Each module, and the names the package's __init__ would have taken from it, in the
# order the later ones need the earlier ones' names on the package.
MODULES = {
    "credentials": ("AwsCredentials", "MinIOCredentials"),
    "client_parameters": ("AwsClientParameters",),
    "s3": ("S3Bucket",),
}
_loading = threading.Lock()


def _package() -> ModuleType:
    with _loading:
        loaded = sys.modules.get(PACKAGE)
        if loaded is not None:
            return loaded
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"{PACKAGE} is not installed")
        package = importlib.util.module_from_spec(spec)  # its __init__ is not run
        sys.modules[PACKAGE] = package
        try:
            for module, names in MODULES.items():
                loaded_module = importlib.import_module(f"{PACKAGE}.{module}")
                for name in names:
                    setattr(package, name, getattr(loaded_module, name))
        except BaseException:
            del sys.modules[PACKAGE]
            raise
        return package


def s3_blocks() -> tuple[type[AwsClientParameters], type[AwsCredentials], type[S3Bucket]]:
    """prefect-aws's AwsClientParameters, AwsCredentials and S3Bucket."""
    package = _package()
    return package.AwsClientParameters, package.AwsCredentials, package.S3Bucket
