import sys

from etcdop.cli import main

sys.exit(main())
