import sys

from asls_mlx.cli import main

sys.exit(main())
