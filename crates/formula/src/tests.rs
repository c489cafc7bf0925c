use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone, Utc};

use super::*;

/// Every construct of the subset, each at least once.
const CORPUS: &[&str] = &[
    "Name",
    "Account.Name",
    "Account.Owner.Name",
    "Account.Name & ' (' & Account.Industry & ')'",
    "FirstName + ' ' + LastName",
    "Amount * Probability / 100",
    "-Amount + 3.25 - (2 - 1)",
    "IF(ISBLANK(Account.Industry), 'Unknown', Account.Industry)",
    "IF(CloseDate < TODAY(), 'Overdue', 'Open')",
    "CloseDate - TODAY()",
    "NOW() - CreatedDate > 1.5",
    "TEXT(Amount) & ' USD'",
    "BLANKVALUE(Email, 'none')",
    "AND(IsClosed, NOT(IsWon)) || Amount >= 1000",
    "!IsDeleted && Amount <> 0 && Amount != 1 && Amount == 2 && Amount = 3",
    "Amount <= 10 || Amount > 20",
    "IF(TRUE, NULL, FALSE)",
    "'it\\'s' & \"double\" & 'back\\\\slash' & 'line\\nbreak'",
    "a - (b - c)",
    "(a & b) & c",
    "a / (b * c)",
    "OR(a, b, c)",
    "/* a comment */ Name",
];

#[test]
fn every_formula_of_the_subset_round_trips_through_the_parser() {
    for text in CORPUS {
        let parsed = Formula::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let printed = parsed.to_string();
        let again = Formula::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(parsed, again, "{text} printed as {printed}");
    }
}

#[test]
fn precedence_follows_salesforce() {
    let f = Formula::parse("1 + 2 * 3 = 7 && 'a' & 'b' = 'ab'").unwrap();
    assert_eq!(eval_with(&f, &[]), Value::Bool(true));
    assert_eq!(f.to_string(), "1 + 2 * 3 = 7 && 'a' & 'b' = 'ab'");
    let g = Formula::parse("(1 + 2) * 3").unwrap();
    assert_eq!(g.to_string(), "(1 + 2) * 3");
    assert_eq!(eval_with(&g, &[]), Value::Number(9.0));
}

#[test]
fn references_name_fields_and_relationships_once() {
    let f = Formula::parse("Account.Name & Account.Industry & Account.Name & Email").unwrap();
    let refs: Vec<String> = f.references().iter().map(|p| p.to_string()).collect();
    assert_eq!(refs, ["Account.Name", "Account.Industry", "Email"]);
    assert_eq!(f.references()[0].relationships(), ["Account".to_owned()]);
    assert_eq!(f.references()[0].field(), "Name");
    assert!(!f.is_time_dependent());
    assert!(Formula::parse("IF(CloseDate < TODAY(), 1, 0)")
        .unwrap()
        .is_time_dependent());
    assert!(Formula::parse("NOW()").unwrap().is_time_dependent());
}

#[test]
fn unsupported_formulas_are_refused_with_what_and_where() {
    for (text, want) in [
        (
            "VLOOKUP(a, b, c)",
            "function VLOOKUP is not supported at offset 0",
        ),
        (
            "a.b.c.d",
            "a.b.c.d goes more than 2 relationships deep at offset 0",
        ),
        ("$User.Name", "$User is not supported at offset 0"),
        ("IF(a, b)", "IF takes 3 arguments, got 2 at offset 0"),
        ("TODAY(1)", "TODAY takes no arguments, got 1 at offset 0"),
        ("1 +", "the formula ends too early at offset 3"),
        ("'open", "text literal is not closed at offset 0"),
        ("a b", "unexpected text after the formula at offset 2"),
        ("a # b", "unexpected character '#' at offset 2"),
    ] {
        let err = Formula::parse(text).unwrap_err();
        assert_eq!(err.to_string(), format!("formula: {want}"), "{text}");
    }
}

struct Record(HashMap<String, Value>);

impl Fields for Record {
    fn field(&self, path: &FieldPath) -> Value {
        self.0
            .get(&path.to_string().to_ascii_lowercase())
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn eval_with(f: &Formula, fields: &[(&str, Value)]) -> Value {
    let record = Record(
        fields
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    );
    let env = Env {
        fields: &record,
        now: Utc.with_ymd_and_hms(2026, 12, 2, 10, 30, 0).unwrap(),
    };
    f.eval(&env).unwrap()
}

#[test]
fn evaluates_parent_fields_text_numbers_dates_and_blanks() {
    let text = |s: &str| Value::Text(s.into());
    let f = Formula::parse("Account.Name & ' (' & Account.Industry & ')'").unwrap();
    assert_eq!(
        eval_with(
            &f,
            &[
                ("Account.Name", text("Acme")),
                ("Account.Industry", text("Energy"))
            ]
        ),
        text("Acme (Energy)")
    );
    assert_eq!(
        eval_with(&f, &[]),
        text(" ()"),
        "an empty lookup reads blank"
    );
    let f = Formula::parse("IF(ISBLANK(Account.Industry), 'Unknown', Account.Industry)").unwrap();
    assert_eq!(
        eval_with(&f, &[("Account.Industry", text(""))]),
        text("Unknown")
    );
    let f = Formula::parse("TEXT(Amount * 2) & '/' & TEXT(Amount / 4)").unwrap();
    assert_eq!(
        eval_with(&f, &[("Amount", Value::Number(5.0))]),
        text("10/1.25")
    );
    assert_eq!(
        eval_with(&Formula::parse("Amount + 1").unwrap(), &[]),
        Value::Null,
        "arithmetic on a blank number is blank"
    );
    let day = |d| Value::Date(NaiveDate::from_ymd_opt(2026, 12, d).unwrap());
    let f = Formula::parse("IF(CloseDate < TODAY(), 'Overdue', 'Open')").unwrap();
    assert_eq!(eval_with(&f, &[("CloseDate", day(1))]), text("Overdue"));
    assert_eq!(eval_with(&f, &[("CloseDate", day(2))]), text("Open"));
    let f = Formula::parse("CloseDate - TODAY()").unwrap();
    assert_eq!(eval_with(&f, &[("CloseDate", day(9))]), Value::Number(7.0));
    let f = Formula::parse("TODAY() + 30").unwrap();
    assert_eq!(
        eval_with(&f, &[]),
        Value::Date(NaiveDate::from_ymd_opt(2027, 1, 1).unwrap())
    );
    let f = Formula::parse("AND(IsClosed, NOT(IsWon)) || Amount >= 1000").unwrap();
    assert_eq!(
        eval_with(
            &f,
            &[
                ("IsClosed", Value::Bool(true)),
                ("IsWon", Value::Bool(false))
            ]
        ),
        Value::Bool(true)
    );
    assert_eq!(
        eval_with(&f, &[("Amount", Value::Number(10.0))]),
        Value::Bool(false)
    );
}

#[test]
fn type_errors_are_errors_not_values() {
    let f = Formula::parse("Amount * 'x'").unwrap();
    let record = Record(HashMap::from([("amount".to_owned(), Value::Number(1.0))]));
    let env = Env {
        fields: &record,
        now: Utc::now(),
    };
    assert_eq!(
        f.eval(&env).unwrap_err().to_string(),
        "formula: * cannot combine number and text"
    );
}
