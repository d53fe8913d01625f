//! The store contract suite against the DynamoDB adapter, on moto server's real DynamoDB
//! protocol. Same tests, same assertions as the SQLite run.

leadrouter_tests::store_contract_tests!(leadrouter_tests::aws::fresh_dynamo());

/// The SAM template declares the indexes the adapter writes, each with the projection the
/// adapter reads (a mismatch fails on AWS only, where the emulator's table is not used).
#[test]
fn the_template_declares_the_adapters_indexes() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let blocks: Vec<&str> = template.split("- IndexName: ").skip(1).collect();
    assert_eq!(blocks.len(), leadrouter::adapters::dynamo::INDEXES.len(), "one block per index");
    for (index, pk) in leadrouter::adapters::dynamo::INDEXES {
        let block = blocks
            .iter()
            .find(|b| b.split_whitespace().next() == Some(index))
            .unwrap_or_else(|| panic!("the template has no index {index}"));
        let block = block.split("TimeToLiveSpecification").next().unwrap();
        assert!(block.contains(&format!("AttributeName: {pk}, KeyType: HASH")), "{index} is keyed by {pk}");
        assert!(block.contains("AttributeName: seq, KeyType: RANGE"), "{index} is sorted by seq");
        match leadrouter::adapters::dynamo::projected(index) {
            [] => assert!(block.contains("ProjectionType: KEYS_ONLY"), "{index} projects keys only"),
            attrs => assert!(
                block.contains(&format!("NonKeyAttributes: [{}]", attrs.join(", "))),
                "{index} projects {attrs:?}"
            ),
        }
    }
}

/// A lead written before leads were stored as one compressed document (its fields as the
/// item's attributes) is still read, listed and changed; the change writes the new layout.
#[tokio::test]
async fn a_lead_stored_as_attributes_is_still_read() {
    use leadrouter::domain::{Contact, Email, Lead, LeadId, LeadStatus};
    use leadrouter::ports::{LeadQuery, LeadStore, Updated};
    let store = leadrouter_tests::aws::fresh_dynamo().await;
    let contact = Contact { email: Some(Email::parse("old@layout.com").unwrap()), ..Contact::default() };
    let lead = Lead::new(LeadId::new(), "web".into(), contact, chrono::Utc::now());
    let mut item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
        serde_dynamo::to_item(&lead).unwrap();
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    item.insert("pk".into(), s(&format!("LEAD#{}", lead.id)));
    item.insert("sk".into(), s("A"));
    item.insert("version".into(), aws_sdk_dynamodb::types::AttributeValue::N("1".into()));
    item.insert("seq".into(), s(&format!("{:016}#{}", lead.received_at.timestamp_micros(), lead.id)));
    // The index keys the earlier layout gave a received lead.
    item.insert("all_pk".into(), s("ALL#0"));
    item.insert("by_source_pk".into(), s("SOURCE#web#0"));
    item.insert("pending_pk".into(), s("PENDING#0"));
    item.insert("stage".into(), s("dedup"));
    store.client().put_item().table_name(store.table()).set_item(Some(item)).send().await.unwrap();
    assert_eq!(store.get(&lead.id).await.unwrap(), Some(lead.clone()));
    let page = store.list(LeadQuery { limit: 5, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(page.items, vec![lead.clone()]);
    let changed = store
        .update(vec![lead.id.clone()], |l| {
            l.transition(LeadStatus::Unique, "first", chrono::Utc::now());
            true
        })
        .await
        .unwrap();
    assert!(matches!(&changed[0], Updated::Written(l) if l.status == LeadStatus::Unique));
    let key = std::collections::HashMap::from([
        ("pk".to_owned(), s(&format!("LEAD#{}", lead.id))),
        ("sk".to_owned(), s("A")),
    ]);
    let stored = store.client().get_item().table_name(store.table()).set_key(Some(key)).send().await.unwrap();
    let stored = stored.item.unwrap();
    assert!(stored.contains_key("doc") && !stored.contains_key("email"), "rewritten as a document: {stored:?}");
    assert_eq!(store.get(&lead.id).await.unwrap().map(|l| l.status), Some(LeadStatus::Unique));
}

/// With `[retention] delete_after_days`, every lead item carries the table's TTL attribute,
/// `expires_at` (unix seconds), that long after the lead's last activity, moving with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_items_carry_their_ttl_from_their_last_activity() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use leadrouter::ports::LeadStore;
    let after = chrono::Duration::days(30);
    let store = leadrouter_tests::aws::fresh_dynamo().await.with_delete_after(Some(after));
    let mut lead = leadrouter_tests::contract::lead("ttl@acme.com", "web");
    lead.received_at -= chrono::Duration::days(3);
    lead.history[0].at = lead.received_at;
    store.insert(lead.clone()).await.unwrap();
    let expires = |store: &leadrouter::adapters::dynamo::DynamoStore, id: &leadrouter::domain::LeadId| {
        let (client, table, id) = (store.client().clone(), store.table().to_owned(), id.to_string());
        async move {
            let item = client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("LEAD#{id}")))
                .key("sk", AttributeValue::S("A".into()))
                .send()
                .await
                .unwrap()
                .item
                .unwrap();
            item["expires_at"].as_n().unwrap().parse::<i64>().unwrap()
        }
    };
    assert_eq!(expires(&store, &lead.id).await, (lead.received_at + after).timestamp());
    let now = chrono::Utc::now();
    store
        .update(vec![lead.id.clone()], move |l| {
            l.transition(leadrouter::domain::LeadStatus::Unique, "activity", now);
            true
        })
        .await
        .unwrap();
    assert_eq!(expires(&store, &lead.id).await, (now + after).timestamp(), "activity moves the expiry");
}

/// Every route of the OpenAPI document is an event of some function in the SAM template, so
/// that what runs locally is reachable on AWS too.
#[test]
fn the_template_routes_every_path_of_the_api() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let events: Vec<(String, String)> = template
        .split("Type: HttpApi")
        .skip(1)
        .filter_map(|block| {
            let field =
                |name: &str| block.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()));
            Some((field("Method:")?, field("Path:")?))
        })
        .collect();
    let api: serde_json::Value = serde_json::from_str(&leadrouter::http::openapi::OPENAPI_JSON).unwrap();
    let mut missing = Vec::new();
    for (path, item) in api["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            if !events.iter().any(|(em, ep)| ep == path && (*em == m || em == "ANY")) {
                missing.push(format!("{m} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes in the API but not in infra/template.yaml: {missing:?}");
}

/// A page of `list` reads a bounded number of leads (here 3): a search matching few of them
/// pages on with cursors and finds every match.
#[tokio::test]
async fn a_search_reads_a_bounded_number_of_leads_per_page() {
    let store = leadrouter_tests::aws::fresh_dynamo().await.with_list_reads(3);
    leadrouter_tests::contract::a_bounded_search_pages_to_every_match(store).await;
}
