"""A small AudioSet segments CSV and class-label file, as published (3 # lines, quoted labels)."""

AUDIOSET_CSV = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
missingYTID, 0.000, 10.000, "/m/09x0r"
"""
CLASS_LABELS = 'index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/t/dd00088,"Gush"\n2,/m/012xff,"Walk, footsteps"\n'
