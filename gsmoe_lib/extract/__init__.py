"""`gsmoe extract`: from a video file to the field's I3D features, every crop / snippet convention named.

Self-extracted features rarely match the released ones, because each release made its own choices (frame
resize, crop windows and their order, pixel scaling, snippet count) and few wrote them down. Each recipe
here is named after the release it reproduces:

| recipe | reproduces | resize (Pillow) | crops, in file order (`__<c>`) | pixels | T (default) | source |
|---|---|---|---|---|---|---|
| `urdmu-10crop` | UR-DMU's extractor (UCF-Crime 10-crop, 1024-d) | exactly 340 x 256, Lanczos | 0 TL, 1 TR, 2 centre [16:240, 58:282], 3 BL, 4 BR, 5-9 the same on the mirrored frame | 2p/255 - 1 | ceil, last frame repeated | UR-DMU feature_extract/i3d_extract.py; Finspire13/pytorch-i3d-feature-extraction |
| `deepmil-10crop` | the DeepMIL release's order | as urdmu-10crop (decision) | 0 centre, 1-4 TL, TR, BL, BR (corner order: decision), 5-9 mirrored | 2p/255 - 1 | ceil (decision) | Roc-Ng/DeepMIL README |
| `xd-5crop` | XD-Violence 5-crop (1024-d) | short side 256, bilinear | 0 centre, 1 TL, 2 TR, 3 BL, 4 BR; no mirror | 2p/255 - 1 | floor (decision) | Roc-Ng/XDVioDet#4-#6 (the author) |
| `rtfm-10crop` | RTFM's UCF-Crime I3D ResNet-50 (2048-d), `[T, 10, 2048]` | short side 256, bilinear | torchvision TenCrop(224): 0 TL, 1 TR, 2 BL, 3 BR, 4 centre, 5-9 the same on the mirrored frame | (p - 114.75) / 57.375 | ceil, loop-padded | tianyu0207/RTFM#21 (the author) |
| `centre` | one centre crop (urdmu-10crop's crop 2), for a quick look | exactly 340 x 256, Lanczos | 0 centre | 2p/255 - 1 | ceil | this project |

TL / TR / BL / BR: the top-left, top-right, bottom-left, bottom-right 224 x 224 windows. A mirrored window is
the same window taken on the horizontally mirrored frame, so in the oversample order crop 5 is crop 1
mirrored (the mirrored frame's top-left is the original's top-right). Snippets are 16 frames at stride 16
at the video's own frame rate; T = floor(N/16) or ceil(N/16) with N the frames actually decoded
(`--snippets` overrides the recipe's default; XDVioDet's ground truth and video_features use floor((N-1)/16),
which differs from floor(N/16) only when 16 divides N).

Backbones (`backbones`): `i3d-inception` (Inception-I3D, 1024-d: AvgPool3d([2, 7, 7]) after Mixed_5c) and
`i3d-r50` (I3D ResNet-50, 2048-d: the global average after layer4, the paper's backbone). The weights files
that load (`weights`): piergiaj's rgb_imagenet.pt / rgb_charades.pt, the hassony2 port's (v-iashin's
i3d_rgb.pt, UR-DMU's model_rgb.pth), Tushar-N's i3d_r50_kinetics.pth.

Modules: `recipes` (resize, windows, snippet rules), `decode` (PyAV, background thread), `backbones`
(registry, models), `weights` (key sets, strict loading), `features` (one video -> [T, C, D]), `writing`
(layouts, manifest), `command` (`gsmoe extract`), `picture` (score over time with thumbnails).
The user's page: docs/extract.md.
"""
