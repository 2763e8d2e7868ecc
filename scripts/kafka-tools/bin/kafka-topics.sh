#!/usr/bin/env bash
# The subset of Apache Kafka's kafka-topics.sh that librdkafka's test suite runs
# (test_kafka_topics: KAFKA_PATH/bin/kafka-topics.sh), carried out with `broker admin`:
#   --bootstrap-server H:P --create --topic T [--partitions N] [--replication-factor R] [--config K=V]...
#   --bootstrap-server H:P --alter --topic T --partitions N
#   --bootstrap-server H:P --delete --topic T
# Anything else is refused with exit status 2 and says so. BROKER_BIN names the broker binary
# (default: broker on PATH).
set -euo pipefail
broker=${BROKER_BIN:-broker}
bootstrap= action= topic= partitions= rf=1
configs=()
while (($#)); do
  case $1 in
    --bootstrap-server) bootstrap=$2; shift 2 ;;
    --create|--alter|--delete) action=${1#--}; shift ;;
    --topic) topic=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    --replication-factor) rf=$2; shift 2 ;;
    --config) configs+=(--config "$2"); shift 2 ;;
    *) echo "kafka-topics.sh (broker shim): unsupported argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z $bootstrap || -z $topic || -z $action ]]; then
  echo "kafka-topics.sh (broker shim): needs --bootstrap-server, --topic and --create, --alter or --delete" >&2
  exit 2
fi
bootstrap=${bootstrap%%,*}
case $action in
  create) exec "$broker" admin --bootstrap "$bootstrap" topics create "$topic" \
            --partitions "${partitions:-1}" --replication-factor "$rf" "${configs[@]}" ;;
  alter)
    if [[ -z $partitions || ${#configs[@]} -gt 0 ]]; then
      echo "kafka-topics.sh (broker shim): --alter supports --partitions only" >&2
      exit 2
    fi
    exec "$broker" admin --bootstrap "$bootstrap" topics add-partitions "$topic" --partitions "$partitions" ;;
  delete) exec "$broker" admin --bootstrap "$bootstrap" topics delete "$topic" ;;
esac
