"""The two-layer in-context-learning toy (Reddy's task): training and paired comparisons of stream arms,
probes of its attention beside the AMICL memory, the phase grid, figures and ``amicl transformer``."""
