"""What two photos' fingerprints measure, feature by feature; no decision.

Each module measures one kind of evidence and returns its part of `verify.Evidence`:
geometry (keypoint matches and the similarity fit), pixels (aligned pixel agreement),
motion (what a local shift explains), overlays (added bars and logos at the edges),
framing (two frames each showing a strip the other lacks), whole_frame (the fallback
for photos with too few keypoints); cells and tone are what the pixel measures share.
Measurement parameters (blur sigma, RANSAC px, cell size) live beside the code that
uses them; the decision's thresholds live in rules.py / thresholds.toml, and
duplicates/verify.py, which runs the stages, is the only one that hands any of them in.
"""
