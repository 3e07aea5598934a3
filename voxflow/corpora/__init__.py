"""Getting corpora onto disk and into manifests: download, archive extraction, audio conversion, the corpus
catalogue, importers for VoxCeleb/CN-Celeb/Kaldi/Wespeaker/diarization/augmentation layouts, and trial lists."""
