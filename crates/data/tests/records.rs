//! Records parsed from JSON: explicit and implicit prompts (TRL's rule), conversational
//! records, errors naming the field, and the JSON round trip.

use bpo_data::record::Record;
use bpo_data::{Content, FieldError, PairMeta, PreferencePair};
use bpo_model::ChatMessage;
use serde_json::{Value, json};

fn pair(v: Value) -> Result<PreferencePair, FieldError> {
    PreferencePair::from_json(v)
}

#[test]
fn explicit_prompt() {
    let p = pair(json!({"prompt": "Hi", "chosen": " there", "rejected": " you"})).unwrap();
    assert_eq!(p.prompt, Content::text("Hi"));
    assert_eq!(p.chosen, Content::text(" there"));
}

#[test]
fn implicit_prompt_like_trl() {
    let p = pair(json!({"chosen": "The sky is blue.", "rejected": "The sky is green."})).unwrap();
    assert_eq!(p.prompt, Content::text("The sky is"));
    assert_eq!(p.chosen, Content::text(" blue."));
    assert_eq!(p.rejected, Content::text(" green."));
}

#[test]
fn conversational_implicit_prompt() {
    let user = json!({"role": "user", "content": "Colour of the sky?"});
    let p = pair(json!({
        "chosen": [user, {"role": "assistant", "content": "Blue."}],
        "rejected": [user, {"role": "assistant", "content": "Green."}],
    }))
    .unwrap();
    assert_eq!(
        p.prompt,
        Content::Chat(vec![ChatMessage::new("user", "Colour of the sky?")])
    );
    assert_eq!(
        p.chosen,
        Content::Chat(vec![ChatMessage::new("assistant", "Blue.")])
    );
}

#[test]
fn field_errors_name_the_field() {
    let cases = [
        (
            json!({"prompt": "x", "rejected": "b"}),
            "field `chosen`: is missing",
        ),
        (
            json!({"prompt": "x", "chosen": "", "rejected": "b"}),
            "field `chosen`: is empty",
        ),
        (
            json!({"prompt": "x", "chosen": 3, "rejected": "b"}),
            "field `chosen`: must be a string or a list of messages, found a number",
        ),
        (
            json!({"prompt": "x", "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant", "content": "b"}]}),
            "field `chosen[0].content`: is missing",
        ),
        (
            json!({"chosen": "abc", "rejected": "xyz"}),
            "field `prompt`: is missing",
        ),
        (
            json!({"prompt": "x", "chosen": "a", "rejected": "b", "meta": {"chosen_ids": [1], "chosen_logps": [-1.0, -2.0]}}),
            "field `meta.chosen_logps`",
        ),
        (
            json!({"prompt": "x", "chosen": "a", "rejected": "b", "meta": {"bogus": 1}}),
            "field `meta`: unknown field `bogus`",
        ),
        (json!([1, 2]), "expected a JSON object, found an array"),
    ];
    for (value, want) in cases {
        let err = pair(value).unwrap_err().to_string();
        assert!(err.contains(want), "{err} does not contain {want}");
    }
}

#[test]
fn pair_json_round_trip() {
    let p = PreferencePair {
        prompt: Content::text("p"),
        chosen: Content::text("c"),
        rejected: Content::text("r"),
        meta: PairMeta {
            chosen_score: Some(0.5),
            behavior_version: Some(2),
            chosen_ids: Some(vec![1, 2]),
            chosen_logps: Some(vec![-0.5, -1.5]),
            ..PairMeta::default()
        },
    };
    assert_eq!(PreferencePair::from_json(p.to_json()).unwrap(), p);
}

#[test]
fn message_fields_beyond_role_and_content_are_kept_in_order() {
    let call = json!({"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"unit": "C", "city": "Paris"}}});
    let user = json!({"role": "user", "content": "Weather?"});
    // A turn that only calls tools may leave `content` null; null fields are absent ones.
    let tool_turn =
        json!({"role": "assistant", "content": null, "tool_calls": [call], "name": null});
    let result = json!({"role": "tool", "content": "22", "tool_call_id": "c1", "name": "w"});
    let p = pair(json!({
        "prompt": [user, tool_turn, result],
        "chosen": [{"role": "assistant", "content": "Warm."}],
        "rejected": [{"role": "assistant", "content": "Cold."}],
    }))
    .unwrap();
    let Content::Chat(messages) = &p.prompt else {
        panic!("a conversation")
    };
    assert_eq!(messages[1].content, "");
    assert_eq!(messages[1].extra.len(), 1);
    assert_eq!(messages[1].extra["tool_calls"], json!([call]));
    let keys: Vec<&String> = messages[2].extra.keys().collect();
    assert_eq!(keys, ["tool_call_id", "name"]);
    // The arguments keep the data's key order (the template's `tojson` prints them so).
    let text = serde_json::to_string(&messages[1]).unwrap();
    assert!(text.contains(r#"{"unit":"C","city":"Paris"}"#), "{text}");
    assert_eq!(PreferencePair::from_json(p.to_json()).unwrap(), p);
}
