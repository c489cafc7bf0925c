use super::*;

fn stats() -> cluster::MappingStats {
    cluster::MappingStats {
        connection: "acme".into(),
        object: "Account".into(),
        state: "DATA_SYNCED".into(),
        rows: 100_000,
        synced_through_ms: Some(1_795_989_600_000),
        primary: Some(cluster::PrimaryCounters {
            polls: 12,
            records: 100_400,
            bulk_jobs: 1,
            bulk_batches: 10,
            rest_queries: 11,
        }),
        secondary: Some(cluster::SecondaryCounters {
            polls: 11,
            records: 420,
            drift_records: 17,
            bulk_jobs: 1,
            bulk_batches: 10,
            rest_queries: 10,
        }),
        api_calls: 61,
        db_connections_in_use: 1,
        errors: 0,
        last_error: None,
        owner_epoch: 7,
        writes: Some(cluster::WriteCounters {
            pending: 3,
            sent: 120,
            failed: 1,
            merged: 2,
            mode: "ordered".into(),
            path: "bulk".into(),
        }),
        notify: Some(cluster::NotifyCounters {
            enabled: true,
            events: 240,
            polls_triggered: 31,
            gaps: 2,
            latency_p50_ms: Some(180),
            latency_p95_ms: None,
            unavailable: "no change events for Account".into(),
        }),
        formula_refreshed: 500,
        formula_notes: vec!["Odd__c: refreshed every formula_refresh_secs only".into()],
    }
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: M) {
    let body = encode(&msg);
    assert_eq!(decode::<M>(&body).unwrap(), msg);
}

#[test]
fn cluster_messages_round_trip() {
    round_trip(cluster::RegisterRequest {
        name: "w1".into(),
        version: "0.1.0".into(),
        capacity: 2,
    });
    round_trip(cluster::RegisterReply {
        worker_id: 3,
        lease_epoch: 9,
        lease_expires_ms: 15_000,
        heartbeat_interval_ms: 3_000,
    });
    round_trip(cluster::HeartbeatRequest {
        worker_id: 3,
        lease_epoch: 9,
        mappings: vec![stats(), cluster::MappingStats::default()],
    });
    round_trip(cluster::HeartbeatReply {
        status: cluster::LeaseStatus::Active.into(),
        lease_expires_ms: 15_000,
        assignments: vec![
            cluster::Assignment {
                connection: "acme".into(),
                object: "Account".into(),
                owner_epoch: 41,
                reload_requested: 0,
            },
            cluster::Assignment {
                connection: "acme".into(),
                object: "Invoice__c".into(),
                owner_epoch: 42,
                reload_requested: 2,
            },
        ],
        heartbeat_interval_ms: 3_000,
        connections: vec![cluster::ConnectionSpec {
            name: "acme".into(),
            config_toml: "[[connection]]\nname = \"acme\"\n".into(),
            files: [("mappings.json".to_owned(), b"{}".to_vec())].into(),
            fingerprint: "f00d".into(),
            env: [("SF_PASSWORD".to_owned(), "p".to_owned())].into(),
        }],
    });
    round_trip(cluster::DeregisterRequest {
        worker_id: 3,
        lease_epoch: 9,
    });
}

#[test]
fn admin_messages_round_trip() {
    let status = admin::MappingStatus {
        connection: "acme".into(),
        object: "Account".into(),
        state: "DATA_SYNCED".into(),
        worker: Some("w1".into()),
        rows: 100_000,
        synced_through_ms: Some(1_795_989_600_000),
        primary: Some(admin::PrimaryCounters {
            polls: 12,
            records: 100_400,
            bulk_jobs: 1,
            bulk_batches: 10,
            rest_queries: 11,
        }),
        secondary: Some(admin::SecondaryCounters {
            polls: 11,
            records: 420,
            drift_records: 17,
            bulk_jobs: 1,
            bulk_batches: 10,
            rest_queries: 10,
        }),
        api_calls: 61,
        db_connections_in_use: 1,
        errors: 0,
        writes: Some(admin::WriteCounters {
            pending: 0,
            sent: 5,
            failed: 0,
            ..Default::default()
        }),
        last_error: Some("postgres: 42501: permission denied".into()),
        notify: Some(admin::NotifyCounters {
            enabled: true,
            events: 240,
            polls_triggered: 31,
            gaps: 0,
            latency_p50_ms: Some(180),
            latency_p95_ms: Some(900),
            unavailable: String::new(),
        }),
        formula_refreshed: 500,
        formula_notes: vec!["Odd__c: refreshed every formula_refresh_secs only".into()],
    };
    round_trip(admin::StatusReply {
        workers: vec![admin::WorkerStatus {
            name: "w1".into(),
            mappings: vec!["acme/Account".into()],
            last_heartbeat_ms_ago: 120,
            version: "0.1.0".into(),
            capacity: 1,
            lease_expires_in_ms: -5,
        }],
        mappings: vec![status.clone()],
    });
    round_trip(admin::MappingReply {
        mappings: vec![admin::MappingDetail {
            status: Some(status),
            access: "read_write".into(),
            sf_polling_seconds: 600,
            fields: vec!["Id".into(), "Name".into()],
            owner_epoch: 4,
            last_error: Some("boom".into()),
        }],
    });
    round_trip(admin::ImportRequest {
        connection: "acme".into(),
        contents: br#"{"mappings":[],"version":1}"#.to_vec(),
        replace: true,
    });
    round_trip(admin::DriftRequest { connection: None });
    round_trip(admin::ErrorsRequest {
        connection: Some("acme".into()),
    });
    round_trip(admin::ReloadRequest {
        connection: "acme".into(),
        object: "Account".into(),
    });
}

#[test]
fn optional_fields_keep_absent_apart_from_zero() {
    let absent = cluster::MappingStats::default();
    let zero = cluster::MappingStats {
        synced_through_ms: Some(0),
        ..Default::default()
    };
    assert_eq!(
        decode::<cluster::MappingStats>(&encode(&absent))
            .unwrap()
            .synced_through_ms,
        None
    );
    assert_eq!(
        decode::<cluster::MappingStats>(&encode(&zero))
            .unwrap()
            .synced_through_ms,
        Some(0)
    );
}

#[test]
fn unknown_fields_are_skipped_so_older_peers_read_newer_messages() {
    // A newer HeartbeatRequest carrying field 99 (varint 5) must still decode.
    let mut body = encode(&cluster::HeartbeatRequest {
        worker_id: 3,
        lease_epoch: 9,
        mappings: vec![],
    });
    body.extend_from_slice(&[0x98, 0x06, 0x05]);
    let msg: cluster::HeartbeatRequest = decode(&body).unwrap();
    assert_eq!((msg.worker_id, msg.lease_epoch), (3, 9));
}

#[test]
fn garbage_is_a_decode_error() {
    assert!(decode::<cluster::HeartbeatRequest>(&[0xff, 0xff, 0xff]).is_err());
    // An unknown enum value decodes (proto3 open enums) and reads as unspecified.
    let reply: cluster::HeartbeatReply = decode(&[0x08, 0x63]).unwrap();
    assert_eq!(reply.status, 99);
    assert_eq!(reply.status(), cluster::LeaseStatus::Unspecified);
}

#[test]
fn rpc_markers_pair_types_with_paths() {
    use admin::admin_service as a;
    use cluster::coordinator_service as c;
    assert_eq!(
        <c::Register as Rpc>::PATH,
        "/driftless.cluster.v1.CoordinatorService/Register"
    );
    assert_eq!(
        <c::Heartbeat as Rpc>::PATH,
        "/driftless.cluster.v1.CoordinatorService/Heartbeat"
    );
    assert_eq!(
        <c::Deregister as Rpc>::PATH,
        "/driftless.cluster.v1.CoordinatorService/Deregister"
    );
    assert_eq!(
        <a::Status as Rpc>::PATH,
        "/driftless.admin.v1.AdminService/Status"
    );
    assert_eq!(
        <a::Import as Rpc>::PATH,
        "/driftless.admin.v1.AdminService/Import"
    );
    // The request type is what the marker says: this only compiles if the pairing is right.
    fn reply_for<R: Rpc>(_: &R::Request) -> R::Reply {
        R::Reply::default()
    }
    let _: cluster::HeartbeatReply =
        reply_for::<c::Heartbeat>(&cluster::HeartbeatRequest::default());
    let _: admin::ExportReply = reply_for::<a::Export>(&admin::ExportRequest::default());
    assert_eq!(CONTENT_TYPE, "application/x-protobuf");
}
