"""Shared code for the lecture studies (experiments/lecture_*.py): each claim of the course notes
as a measurement, with figures and a verdict. Library code only; the studies own their workdirs.
"""
