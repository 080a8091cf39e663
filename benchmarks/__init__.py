"""The benchmarks behind `python bench.py`: each piece against the original-style loop, in the same run.

`bench.py` runs them all as one table (`python bench.py --quick`) or one piece with its own flags
(`python bench.py ctc|probe|mine ...`). Modules: common (device naming, timing with warm-up and
synchronisation, the JSON record, the ratio table), train (training images/s and the speed-flag
ablation), ctc, probe, mine, discriminability, cpu (CPU training variants against the processor's peak;
`python bench.py cpu`).
"""
