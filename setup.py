"""sledge: early-exit transformer classifiers, an AllenNLP plugin."""

from setuptools import find_packages, setup

setup(
    name="sledge",
    version="0.1.0",
    description="Early-exit transformer classifiers for AllenNLP (Schwartz et al., ACL 2020, and successors)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sledge", "sledge.*"]),
    python_requires=">=3.11,<3.12",
    # The pinned, tested stack is in requirements.txt + constraints.txt; `make install` sets it up.
    # allennlp itself is installed with --no-deps (its declared pins cannot be met), so it is not listed.
    install_requires=["torch", "transformers", "jsonnet", "matplotlib", "scipy", "tqdm"],
    # Extras, pinned in constraints.txt: `allennlp score` and sledge.scoring on Ray Data (sledge[ray]);
    # the ONNX Runtime backend (`model.backend: onnxruntime`, docs/backends.md; sledge[onnx]).
    extras_require={"ray": ["ray[data]"], "onnx": ["onnxruntime", "onnx"]},
)
