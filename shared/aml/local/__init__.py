"""The ``local`` AML backend: a pipeline's steps run as processes on this machine, in the
background, with their status, logs, outputs and metrics kept in the lake, so that the
function app and the command line work with no Azure subscription."""
