//! Chat templates: the model's own Jinja template, rendered by minijinja configured as
//! transformers configures Jinja for `apply_chat_template` (`trim_blocks`, `lstrip_blocks`,
//! loop controls, Python's string and dict methods, `raise_exception`, `strftime_now`, and a
//! `tojson` that writes what Python's `json.dumps` writes), with the same variables: the
//! messages, `add_generation_prompt`, the special tokens, `tools` and `documents` (none), and
//! any extra keyword the caller passes (`enable_thinking`, `date_string`, ...).

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

use crate::error::ModelError;

/// One chat message: a role (`system`, `user`, `assistant`, `tool`), its text, and any other
/// fields the conversation gives it (`tool_calls`, `tool_call_id`, `name`, `reasoning_content`,
/// ...), which reach the chat template as they are, as in transformers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: String,
    /// What they say.
    pub content: String,
    /// The message's other fields, in the order given.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatMessage {
    /// A message from `role` with no other fields.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            extra: serde_json::Map::new(),
        }
    }
}

/// A model's chat template, parsed once, with the special tokens it may print.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    tokens: Vec<(String, String)>,
    /// The environment holding the parsed template (`TEMPLATE`).
    env: std::sync::Arc<Environment<'static>>,
}

/// The template's name in its environment.
const TEMPLATE: &str = "chat_template";

impl ChatTemplate {
    /// The template `source` (Jinja) with the special tokens it may print, by variable name
    /// (`bos_token`, `eos_token`, `pad_token`, ...: transformers passes every special token it
    /// knows); an error names the template's syntax error.
    pub fn new(
        source: impl Into<String>,
        tokens: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ModelError> {
        let source = source.into();
        let mut env = environment();
        env.add_template_owned(TEMPLATE, source.clone())
            .map_err(|e| template_error("does not parse", &e))?;
        Ok(ChatTemplate {
            source,
            tokens: tokens.into_iter().collect(),
            env: std::sync::Arc::new(env),
        })
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is the template of `source` with `tokens`.
    pub fn is_for(&self, source: &str, tokens: &[(String, String)]) -> bool {
        self.source == source && self.tokens == tokens
    }

    /// Renders `messages`, opening an assistant turn when `add_generation_prompt`; `extra`
    /// (a JSON object, or null) adds variables, as keyword arguments of transformers'
    /// `apply_chat_template` do (they win over the special tokens, as there). A template that
    /// raises (e.g. roles that do not alternate) is an error carrying its message.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Value,
    ) -> Result<String, ModelError> {
        // minijinja's own maps keep insertion order (a message's `role` before its `content`,
        // as in Python's dicts); the context's own order does not matter.
        let mut context: std::collections::BTreeMap<String, Value> = self
            .tokens
            .iter()
            .map(|(name, token)| (name.clone(), Value::from(token.as_str())))
            .collect();
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        context.extend(
            extra
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), Value::from_serialize(v))),
        );
        context.insert("messages".into(), Value::from_serialize(messages));
        context.insert("add_generation_prompt".into(), add_generation_prompt.into());
        self.env
            .get_template(TEMPLATE)
            .and_then(|t| t.render(Value::from(context)))
            .map_err(|e| template_error("failed", &e))
    }
}

fn template_error(what: &str, e: &Error) -> ModelError {
    let message = match e.kind() {
        // `raise_exception(...)`: the template's own words.
        ErrorKind::InvalidOperation => e.detail().unwrap_or_default().to_owned(),
        _ => format!("{e:#}"),
    };
    ModelError::Tokenizer(format!("the model's chat template {what}: {message}"))
}

/// A Jinja environment as transformers builds it for chat templates.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_function("strftime_now", |format: String| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        strftime(&format, now)
    });
    env.add_filter("tojson", tojson);
    env
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=ensure_ascii,
/// indent=indent, separators=separators, sort_keys=sort_keys)`, `ensure_ascii` false by default.
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ));
        }
        // Python's defaults: no space before the line break when indenting.
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let mut out = String::new();
    let style = JsonStyle {
        indent,
        item,
        key,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    style.write(&value, 0, &mut out)?;
    Ok(out)
}

/// How Python's `json.dumps` lays out a value.
struct JsonStyle {
    indent: Option<usize>,
    item: String,
    key: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn write(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&python_number(value)),
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container(out, depth, '[', ']', &items, |v, d, out| {
                    self.write(v, d, out)
                })?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                self.container(out, depth, '{', '}', &keys, |k, d, out| {
                    self.string(&k.to_string(), out);
                    out.push_str(&self.key);
                    self.write(&value.get_item(k)?, d, out)
                })?;
            }
            _ => self.string(&value.to_string(), out),
        }
        Ok(())
    }

    /// A JSON string as `json.dumps` writes it: `\uXXXX` for controls, and for every non-ASCII
    /// character (as UTF-16 units) when `ensure_ascii`.
    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn container(
        &self,
        out: &mut String,
        depth: usize,
        open: char,
        close: char,
        items: &[Value],
        mut each: impl FnMut(&Value, usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, depth: usize| {
            if let Some(n) = self.indent {
                out.push('\n');
                out.push_str(&" ".repeat(n * depth));
            }
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item);
            }
            newline(out, depth + 1);
            each(item, depth + 1, out)?;
        }
        newline(out, depth);
        out.push(close);
        Ok(())
    }
}

/// A number as Python's `json.dumps` writes it: integers as they are, floats as `repr` does
/// (always a fraction or an exponent, `1e-05` and `1e+16` style exponents).
fn python_number(value: &Value) -> String {
    if let Some(i) = value.as_i64().filter(|_| value.is_integer()) {
        return i.to_string();
    }
    let Ok(f) = f64::try_from(value.clone()) else {
        return value.to_string();
    };
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 || (1e-4..1e16).contains(&f.abs()) {
        let fixed = f.to_string();
        return if fixed.contains('.') {
            fixed
        } else {
            format!("{fixed}.0")
        };
    }
    let scientific = format!("{f:e}");
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// `time.strftime(format)` for a UTC time `secs` after the epoch: the directives chat
/// templates use (`%d %b %B %Y %y %m %H %M %S %j %a %A %%`); others are kept verbatim.
fn strftime(format: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let day_of_year = days as i64 - days_from_civil(year, 1, 1) + 1;
    let weekday = DAYS[(days % 7) as usize];
    let (hour, minute, second) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('b') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of the day `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to (year, month, day).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_a_known_time() {
        // 2024-07-26 13:05:09 UTC, a Friday, day 208 of a leap year (Python's strftime).
        assert_eq!(strftime("%d %b %Y", 1_721_999_109), "26 Jul 2024");
        assert_eq!(
            strftime("%A %a %B %m/%d/%y %H:%M:%S %j %% %Q", 1_721_999_109),
            "Friday Fri July 07/26/24 13:05:09 208 % %Q"
        );
        assert_eq!(strftime("%d %B %Y", 0), "01 January 1970");
        assert_eq!(strftime("%d %b %Y", 951_782_400), "29 Feb 2000");
        for days in [-1000, 0, 59, 60, 365, 11_000, 20_000, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let env = environment();
        let render = |src: &str, ctx: Value| env.render_str(src, ctx).unwrap();
        let list = Value::from_serialize(serde_json::json!([1, 2.5, 3.0, true, null]));
        let x = Value::from_iter([("b", list), ("a", Value::from("é\n\"<&>\u{1}"))]);
        let ctx = minijinja::context! { x => x };
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"b": [1, 2.5, 3.0, true, null], "a": "é\n\"<&>\u0001"}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2, sort_keys=true) }}", ctx.clone()),
            "{\n  \"a\": \"é\\n\\\"<&>\\u0001\",\n  \"b\": [\n    1,\n    2.5,\n    3.0,\n    true,\n    null\n  ]\n}"
        );
        assert_eq!(
            render("{{ [] | tojson }}{{ {} | tojson }}", Value::from(())),
            "[]{}"
        );
        // Python's float repr and ensure_ascii (values from CPython 3.11's json.dumps).
        let numbers = Value::from_serialize(serde_json::json!([
            0.00001,
            1e16,
            123456789012345678.0,
            0.0001,
            1e15,
            -2.5,
            0.0,
            7
        ]));
        assert_eq!(
            render("{{ x | tojson }}", minijinja::context! { x => numbers }),
            "[1e-05, 1e+16, 1.2345678901234568e+17, 0.0001, 1000000000000000.0, -2.5, 0.0, 7]"
        );
        assert_eq!(
            render(
                "{{ x | tojson(ensure_ascii=true) }}",
                minijinja::context! { x => "é😀" }
            ),
            r#""\u00e9\ud83d\ude00""#
        );
    }

    #[test]
    fn a_raising_template_is_an_error_with_its_message() {
        let t = ChatTemplate::new(
            "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok",
            [],
        )
        .unwrap();
        let err = t
            .render(
                &[ChatMessage::new("system", "x")],
                false,
                &serde_json::Value::Null,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("System role not supported"), "{err}");
        let bad = ChatTemplate::new("{% if %}", []).unwrap_err().to_string();
        assert!(bad.contains("does not parse"), "{bad}");
    }
}
