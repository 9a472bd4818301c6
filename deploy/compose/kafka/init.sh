#!/bin/sh
# One-shot set-up of the compose stack's broker, as the admin principal: the topics of
# deploy/local/topics.txt, a SCRAM principal per service (its password from .env) and the ACLs of
# deploy/local/acls.txt (what `ooda-local infra-up` does through `python -m ooda.bus provision`).
set -eu
: "${KAFKA_ADMIN_PASSWORD:?}"
umask 077
cat >/tmp/admin.properties <<CONF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ooda-admin" password="${KAFKA_ADMIN_PASSWORD}";
CONF
grep -v '^#' /topics.txt | while read -r name partitions; do
    [ -n "$name" ] || continue
    /opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties \
        --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1
done
for service in cmdb pipeline monitor elastic decision; do
    var="$(echo "$service" | tr a-z A-Z)_KAFKA_PASSWORD"
    password="$(eval echo "\${$var:?set $var}")"
    /opt/kafka/bin/kafka-configs.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties \
        --alter --entity-type users --entity-name "$service" \
        --add-config "SCRAM-SHA-512=[password=${password}]"
done
sed 's/#.*//' /acls.txt | while read -r principal operation resource name pattern; do
    [ -n "$principal" ] || continue
    /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties \
        --add --allow-principal "User:$principal" --operation "$operation" \
        "--$resource" "$name" --resource-pattern-type "${pattern:-literal}"
done
