"""Pipeline stages: one module per stage (orchestration only: read the plan, call components, write
artifacts) and ``registry`` (the stage contract and the list of stages).

May import: every component package. A stage never imports another stage (only ``registry``).
"""
