"""``python -m cifar_cnn`` is the ``cifar-cnn`` command."""

from cifar_cnn.cli import main

raise SystemExit(main())
