"""The accuracy harness of issue #14: open-set 1:N identification measured on real labelled faces.

Development tooling (services never import it). One module per step:

- `variants`: the degraded versions of a photo that imitate store cameras (sizes, blur, exposure, JPEG);
- `pipeline`: the services' own detection -> gates -> alignment -> embedding path on one image;
- `probes`: every dataset photo and variant through that path, cached on disk as columnar records;
- `gates`: the detection gates re-applied to stored measures (the tree's, and the hand-set ones before #14);
- `bins`: the quality bins (by the probe's inter-eye distance) shared by the report and the calibration;
- `distractors`: synthetic face-like gallery templates fitted to real SFace embeddings;
- `search`: brute-force cosine search against nested galleries (1k, 10k, 100k), chunked;
- `protocol`: the NIST FRVT open-set protocol: folds, galleries, mated and non-mated searches;
- `fusion_eval`: 5-frame sequences and their fused probes (fused with the gateway's own functions);
- `measure`: all of the above, made once and cached;
- `curves`: the measured FPIR/FNIR curves the calibration file stores;
- `clips`: the real video clips of the test data, as mated sequences;
- `enrollment_eval`: the gateway's enrollment rule on every real photo (refusal rate);
- `report`: FNIR at fixed FPIR per group, the hand-set and the calibrated decisions, fusion, refusals;
- `plots`: the DET curves;
- `evaluate`: `python -m retailface.devtools.accuracy.evaluate` (the last stdout line is one JSON object);
- `calibrate`: `python -m retailface.devtools.accuracy.calibrate` writes the matching service's calibration.

docs/ACCURACY.md has the results and what the data can and cannot show.
"""
