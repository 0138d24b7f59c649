use super::*;

#[test]
fn labelled_counters_follow_their_enums() {
    let m = Metrics::new(Vec::new());
    m.record_auth(AuthOutcome::Unavailable);
    m.record_cache(false);
    m.record_upstream_failure(UpstreamFailure::Timeout);
    m.record_redis(RedisOutcome::Error);
    let text = m.render();
    assert!(text.contains("portcullis_auth_total{result=\"unavailable\"} 1"));
    assert!(text.contains("portcullis_auth_total{result=\"ok\"} 0"));
    assert!(text.contains("portcullis_identity_cache_total{result=\"miss\"} 1"));
    assert!(text.contains("portcullis_upstream_failures_total{kind=\"timeout\"} 1"));
    assert!(text.contains("portcullis_redis_lookups_total{result=\"error\"} 1"));
}

#[test]
fn render_counts_requests_by_route_and_class() {
    let m = Metrics::new(vec!["api".into(), "we\"ird".into()]);
    let api = m.route_counters("api");
    m.record_request(
        RouteSlot::Route(0),
        Some(&api),
        200,
        Duration::from_micros(300),
    );
    m.record_request(
        RouteSlot::Route(0),
        Some(&api),
        404,
        Duration::from_millis(3),
    );
    m.record_request(RouteSlot::Unmatched, None, 404, Duration::from_millis(3));
    // A reload keeps a route's counters by name; a new name gets its own.
    assert!(Arc::ptr_eq(&api, &m.route_counters("api")));
    let fresh = m.route_counters("new");
    m.record_request(
        RouteSlot::Route(0),
        Some(&fresh),
        500,
        Duration::from_millis(1),
    );
    m.record_reload(true);
    m.record_reload(false);
    m.record_reload(false);
    let text = m.render();
    assert!(text.contains("portcullis_requests_total{route=\"api\",status=\"2xx\"} 1"));
    assert!(text.contains("portcullis_requests_total{route=\"api\",status=\"4xx\"} 1"));
    assert!(text.contains("portcullis_requests_total{route=\"(unmatched)\",status=\"4xx\"} 1"));
    assert!(text.contains("route=\"we\\\"ird\""));
    assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
    assert!(text.contains("portcullis_request_duration_seconds_count 4"));
    assert!(text.contains("portcullis_requests_total{route=\"new\",status=\"5xx\"} 1"));
    assert!(text.contains("portcullis_config_reloads_total{result=\"applied\"} 1"));
    assert!(text.contains("portcullis_config_reloads_total{result=\"refused\"} 2"));
}
