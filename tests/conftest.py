import os, signal, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # booklint and other test helpers
os.environ.setdefault('OMP_NUM_THREADS', '1')
_shared = Path(__file__).resolve().parents[2]/'shared'/'data'
if 'LLMBOOK_DATA' not in os.environ and _shared.is_dir():
    os.environ['LLMBOOK_DATA'] = str(_shared)

# A runner started in the background by a non-interactive shell (`cmd &`) inherits SIGINT
# ignored, and so would every llmbook process the Ctrl-C tests start; give Ctrl-C back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

try:  # generous deadlines on a loaded 2-core CI machine
    from hypothesis import settings
    settings.register_profile('ci', deadline=None, print_blob=True)
    settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))
except ImportError:
    pass
