"""schedgym: reinforcement-learning scheduling gym.

Importing :mod:`schedgym` registers every environment id (``schedgym/JobShop-v0``, ...) with
Gymnasium, so ``gym.make("schedgym:schedgym/JobShop-v0")`` works without further set-up.
"""

from schedgym.envs import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["__version__", "register_envs"]
