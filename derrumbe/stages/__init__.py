"""The stage graph, one module a stage, in the order the pipeline runs them:

plate -> matte -> cleanplate -> camera -> fracture -> simulate -> render -> comp -> outputs

Each stage is a function of its inputs and its own parameters; imports only run down
this list (a later stage may import an earlier one's types, never the reverse).
"""
