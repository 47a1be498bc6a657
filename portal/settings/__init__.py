"""Settings, split by concern and read from the environment.

Each module below owns one concern; this package merges them in a fixed order.
"""

from .api import *  # noqa: F401,F403
from .auth import *  # noqa: F401,F403
from .billing import *  # noqa: F401,F403
from .core import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .operations import *  # noqa: F401,F403
from .security import *  # noqa: F401,F403
