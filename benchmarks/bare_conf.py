"""gunicorn settings for the bare Falcon baseline: statskit's own worker and connection balance
(``statskit_server/worker.py``, ``statskit_server/balance.py``), so the baseline and statskit
differ by the app alone. Without the balance one worker often took most of the connections,
and the baseline's rate swung between runs by 2-3x."""
from statskit_server import balance

pre_fork = balance.pre_fork
child_exit = balance.child_exit
