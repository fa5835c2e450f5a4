"""A command for people: submit local files to a running service and get its outputs back.

    python -m client submit --service http://127.0.0.1:9090 photo.png rotation.txt

uploads the files to S3, POSTs the task to the service as the engine would, follows its
status, waits for the callback on a local port, downloads the outputs next to the inputs
and prints where they are and the task's flow run in the Prefect UI.
"""
