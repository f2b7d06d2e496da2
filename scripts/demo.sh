#!/usr/bin/env bash
# The main job (`make demo`): train sledge (MiniLM-L6, exits 0/1/3/5) on the real SST-2 sentence-level
# data for the paper's 2 epochs, evaluate it on the test set, calibrate it on the dev set, sweep the
# confidence threshold on the test set, and predict two sentences at two thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
ALLENNLP=.venv/bin/allennlp
PYTHON=.venv/bin/python
RUN=runs/demo
DATA=data/sst2
start=$(date +%s)

echo "== 1/4 train (2 epochs on $DATA/stsa.binary.train) and evaluate on the test set"
$ALLENNLP train training_config/sst2_minilm.jsonnet -s $RUN --force --include-package sledge
trained=$(date +%s)
$PYTHON - $RUN/metrics.json <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
layers = sorted(int(k.rsplit("_", 1)[1]) for k in metrics if k.startswith("test_accuracy_layer_"))
print(f"{'exit layer':>10} {'dev accuracy':>13} {'test accuracy':>14}")
for layer in layers:
    print(f"{layer:>10} {metrics[f'best_validation_accuracy_layer_{layer}']:>13.4f} "
          f"{metrics[f'test_accuracy_layer_{layer}']:>14.4f}")
print(f"test_accuracy (deepest exit): {metrics['test_accuracy']:.4f}; training took {metrics['training_duration']}")
PY

echo "== 2/4 calibrate on the dev set"
$ALLENNLP calibrate $RUN/model.tar.gz $DATA/stsa.binary.dev --output-file $RUN/calibrated.tar.gz

echo "== 3/4 sweep the threshold on the test set (timings on a sample of 300 instances)"
$ALLENNLP sweep $RUN/calibrated.tar.gz $DATA/stsa.binary.test --output-dir $RUN/sweep \
  --timing-instances 300 --repeats 3

echo "== 4/4 predict two sentences at two thresholds"
cat > $RUN/examples.jsonl <<'JSONL'
{"sentence": "a gorgeous , witty , seductive movie ."}
{"sentence": "the film is not nearly as clever as it thinks it is , but it has its moments ."}
JSONL
for threshold in 0.9 1.0; do
  echo "-- confidence_threshold $threshold"
  $ALLENNLP predict $RUN/calibrated.tar.gz $RUN/examples.jsonl --include-package sledge --silent \
    --output-file $RUN/predictions-$threshold.jsonl -o "{\"model.confidence_threshold\": $threshold}"
  $PYTHON - $RUN/examples.jsonl $RUN/predictions-$threshold.jsonl <<'PY'
import json, sys
for source, line in zip(open(sys.argv[1]), open(sys.argv[2])):
    p = json.loads(line)
    print(f"  exit layer {p['exit_layer']} (exit {p['exit_index']}), label {p['label']}, "
          f"confidence {p['confidence']:.3f}: {json.loads(source)['sentence']}")
PY
done

end=$(date +%s)
echo "== done in $((end - start)) s (training $((trained - start)) s); outputs in $RUN/:"
echo "   model.tar.gz, calibrated.tar.gz, metrics.json, sweep/sweep.{json,csv,png}, predictions-*.jsonl"
