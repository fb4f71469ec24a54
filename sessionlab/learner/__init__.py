"""The learner's side: the working copy of buggy/ (``workspace``) and the exercises with their hints (``exercises``)."""
