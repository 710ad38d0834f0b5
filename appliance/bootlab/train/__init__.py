"""Training: LAB multi-phase fine-tuning as `bootlab-train.service`.

Two halves, two Pythons. The appliance side (`preflight`, `supervise`) runs in the
appliance's venv: it checks the job, writes a `Plan`, holds the GPU lock, relays progress to
systemd and publishes the result into the model store. The worker side (`worker`, `tokens`,
`engine`, `checkpoint`) runs in the image's ML venv, next to torch and transformers, and
imports nothing from the appliance beyond this package's stdlib-only modules."""
