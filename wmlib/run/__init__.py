"""Running World Models end to end: the run directory's stages (pipeline.py), the sizes of a run
(profiles.py: smoke, default, gpu, paper), the command line (cli.py, `python -m wmlib`), shipping trained
weights with a model card (export.py) and the shipped runs' settings (recipes.py). Built on the core
modules and the studies."""
