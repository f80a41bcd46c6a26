import os
import sys

from fashionlab.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # One rank of a torchrun job leaves without interpreter teardown: objects still holding the
    # gloo process group would be freed there with the GIL held, which can deadlock (see
    # fashionlab.training.trainer.execute_and_release), and torchrun waits for every rank. All
    # the run keeps is already written atomically; only what was printed needs flushing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
