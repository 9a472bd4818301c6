#!/bin/sh
# The compose stack's broker, secured as deploy/local's is (see deploy/local/README.md, "Security
# of the bus"): SASL/SCRAM-SHA-512 on the client listeners (kafka:9092 inside the network,
# 127.0.0.1:${KAFKA_HOST_PORT} on the host), SASL PLAIN with the broker's own identity on the
# controller listener, the StandardAuthorizer with allow.everyone.if.no.acl.found=false, and the
# admin and the broker as the only super users. The admin's and the broker's SCRAM credentials
# are created with the storage; kafka-init adds the services' and the ACLs of acls.txt.
# Difference from deploy/local: the listeners are SASL_PLAINTEXT on the compose network too; put
# TLS (SASL_SSL) on them before the network is shared with anything you do not trust.
set -eu
: "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_BROKER_PASSWORD:?}" "${KAFKA_HOST_PORT:=9094}"
umask 077
props=/tmp/server.properties
cat >"$props" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=kafka:9093
controller.listener.names=CONTROLLER
listeners=CLIENT://:9092,EXTERNAL://:9094,CONTROLLER://:9093
advertised.listeners=CLIENT://kafka:9092,EXTERNAL://127.0.0.1:${KAFKA_HOST_PORT},CONTROLLER://kafka:9093
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=CLIENT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ooda-broker" password="${KAFKA_BROKER_PASSWORD}";
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ooda-broker" password="${KAFKA_BROKER_PASSWORD}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="ooda-broker" password="${KAFKA_BROKER_PASSWORD}" user_ooda-broker="${KAFKA_BROKER_PASSWORD}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ooda-admin;User:ooda-broker
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
CONF
# The admin's client settings, for the healthcheck and kafka-init's tools.
cat >/tmp/admin.properties <<CONF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="ooda-admin" password="${KAFKA_ADMIN_PASSWORD}";
CONF
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    /opt/kafka/bin/kafka-storage.sh format --standalone -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" -c "$props" \
        --add-scram "SCRAM-SHA-512=[name=ooda-admin,password=${KAFKA_ADMIN_PASSWORD}]" \
        --add-scram "SCRAM-SHA-512=[name=ooda-broker,password=${KAFKA_BROKER_PASSWORD}]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"
