#!/usr/bin/env python
"""Grand-challenge entry point of the CL-Detection 2023 container (step 6).

Reads the stack(s) of the ``lateral-dental-x-rays`` input (the folder /input/inputs.json names, by default
/input/images/lateral-dental-x-rays/*.mha) and writes /output/orthodontic-landmarks.json, with the model uploaded
to /opt/ml/model or else the one baked into the image; the logic lives in ``cldetection.grand_challenge``.
Outside Docker::

    python step6_docker_and_upload/process.py --input-dir IN --output-dir OUT --config CONFIG --weights CKPT
    python step6_docker_and_upload/process.py --input-dir IN --output-dir OUT --model-dir UNPACKED_TARBALL
"""
import cldetection  # noqa: F401  (compatibility fixes + registrations before anything imports mmpose)
from cldetection.errors import run_cli
from cldetection.grand_challenge import process_main

if __name__ == '__main__':
    run_cli(process_main)
