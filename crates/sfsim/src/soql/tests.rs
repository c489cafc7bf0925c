use super::ast::*;
use super::*;
use crate::schema::Schema;
use crate::value::parse_datetime;
use std::sync::Arc;

fn create(org: &Org, object: &str, values: &[(&str, Value)]) -> String {
    let o = org.schema.object_index(object).unwrap();
    let def = &org.schema.objects[o];
    let values = values
        .iter()
        .map(|(n, v)| (def.field_index(n).unwrap(), v.clone()))
        .collect();
    let mut txn = org.begin();
    let id = org.create(&mut txn, o, values).unwrap();
    org.commit(txn);
    id
}

fn delete(org: &Org, object: &str, id: &str) {
    let o = org.schema.object_index(object).unwrap();
    let mut txn = org.begin();
    org.delete(&mut txn, o, id).unwrap();
    org.commit(txn);
}

fn dt(s: &str) -> Value {
    Value::DateTime(parse_datetime(s).unwrap())
}

struct Fixture {
    org: Arc<Org>,
    acme: String,
    beta: String,
    gamma: String,
    delta: String,
}

/// Four accounts (one deleted), three contacts, three invoices.
fn fixture() -> Fixture {
    let org = Org::new(Schema::standard());
    let acme = create(
        &org,
        "Account",
        &[
            ("Name", Value::text("Acme")),
            ("Industry", Value::text("Banking")),
            ("AnnualRevenue", Value::Double(100.0)),
        ],
    );
    let beta = create(
        &org,
        "Account",
        &[
            ("Name", Value::text("beta")),
            ("NumberOfEmployees", Value::Int(5)),
        ],
    );
    let gamma = create(
        &org,
        "Account",
        &[
            ("Name", Value::text("Gamma Corp")),
            ("Industry", Value::text("Retail")),
            ("AnnualRevenue", Value::Double(50.5)),
        ],
    );
    let delta = create(&org, "Account", &[("Name", Value::text("Delta"))]);
    delete(&org, "Account", &delta);
    create(
        &org,
        "Contact",
        &[
            ("LastName", Value::text("Smith")),
            ("FirstName", Value::text("Ann")),
            ("AccountId", Value::text(acme.clone())),
        ],
    );
    create(
        &org,
        "Contact",
        &[
            ("LastName", Value::text("Jones")),
            ("AccountId", Value::text(gamma.clone())),
        ],
    );
    create(&org, "Contact", &[("LastName", Value::text("Orphan"))]);
    create(
        &org,
        "Invoice__c",
        &[
            ("Name", Value::text("INV-1")),
            ("Account__c", Value::text(acme.clone())),
            ("Tags__c", Value::text("Priority;Export")),
            ("Paid_At__c", dt("2024-06-25T10:00:00Z")),
            (
                "Issued_Date__c",
                Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()),
            ),
            ("Paid__c", Value::Bool(true)),
            ("Amount__c", Value::Double(10.0)),
        ],
    );
    create(
        &org,
        "Invoice__c",
        &[
            ("Name", Value::text("INV-2")),
            ("Tags__c", Value::text("Recurring")),
            ("Paid_At__c", dt("2024-06-25T12:30:00Z")),
            (
                "Issued_Date__c",
                Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 6, 15).unwrap()),
            ),
            ("Amount__c", Value::Double(20.0)),
        ],
    );
    create(
        &org,
        "Invoice__c",
        &[
            ("Name", Value::text("inv_3%")),
            ("Notes__c", Value::text("long text")),
        ],
    );
    Fixture {
        org,
        acme,
        beta,
        gamma,
        delta,
    }
}

fn rows(org: &Org, q: &str) -> Vec<Vec<Value>> {
    rows_all(org, q, false)
}

fn rows_all(org: &Org, q: &str, all: bool) -> Vec<Vec<Value>> {
    let p = plan(org, q).unwrap_or_else(|e| panic!("{q}: {e}"));
    p.execute(org, all)
        .iter()
        .map(|r| p.row_values(org, r))
        .collect()
}

/// The first column of each row as text ("null" for nulls).
fn col(org: &Org, q: &str) -> Vec<String> {
    rows(org, q)
        .into_iter()
        .map(|r| match &r[0] {
            Value::Null => "null".to_string(),
            Value::Text(s) => s.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

fn err(org: &Org, q: &str) -> SfError {
    plan(org, q).expect_err(q)
}

use crate::error::SfError;

// ---- parsing ----

#[test]
fn parses_every_clause() {
    let q = parse(
        "select Id, Account.Name, COUNT() from Contact where (Name = 'x' or not Id != null) and Amount >= -1.5 \
         and Id in ('a', 'b') and Name not in ('c') and Name like 'a%' and Tags__c includes ('a;b', 'c') \
         and Tags__c excludes ('d') and CloseDate = LAST_N_DAYS:30 and Flag = TRUE \
         order by Name desc nulls first, Id limit 10 offset 5",
    )
    .unwrap();
    assert_eq!(q.select.len(), 3);
    assert!(matches!(&q.select[1], SelectItem::Field(p) if p.dotted() == "Account.Name"));
    assert!(matches!(&q.select[2], SelectItem::Count { arg: None, .. }));
    assert_eq!(q.from.text, "Contact");
    let Some(Expr::And(terms)) = &q.filter else {
        panic!("{:?}", q.filter)
    };
    assert_eq!(terms.len(), 9);
    let Expr::Or(inner) = &terms[0] else { panic!() };
    assert!(matches!(&inner[1], Expr::Not(_)));
    assert!(
        matches!(&terms[1], Expr::Cmp { op: CmpOp::Ge, value: LiteralAt { lit: Literal::Number(n), .. }, .. } if *n == -1.5)
    );
    assert!(matches!(&terms[2], Expr::In { negated: false, values, .. } if values.len() == 2));
    assert!(matches!(&terms[3], Expr::In { negated: true, .. }));
    assert!(matches!(&terms[4], Expr::Like { .. }));
    assert!(
        matches!(&terms[5], Expr::Includes { excludes: false, values, .. } if values.len() == 2)
    );
    assert!(matches!(&terms[6], Expr::Includes { excludes: true, .. }));
    assert!(matches!(
        &terms[7],
        Expr::Cmp {
            value: LiteralAt {
                lit: Literal::Relative(RelativeDate::LastNDays(30)),
                ..
            },
            ..
        }
    ));
    assert!(matches!(
        &terms[8],
        Expr::Cmp {
            value: LiteralAt {
                lit: Literal::Bool(true),
                ..
            },
            ..
        }
    ));
    assert_eq!(q.order_by.len(), 2);
    assert!(q.order_by[0].descending && q.order_by[0].nulls_first == Some(true));
    assert!(!q.order_by[1].descending && q.order_by[1].nulls_first.is_none());
    assert_eq!(q.limit.map(|n| n.value), Some(10.0));
    assert_eq!(q.offset.map(|n| n.value), Some(5.0));
}

#[test]
fn parses_operators_and_string_escapes() {
    for (src, op) in [
        ("=", CmpOp::Eq),
        ("!=", CmpOp::Ne),
        ("<>", CmpOp::Ne),
        ("<", CmpOp::Lt),
        ("<=", CmpOp::Le),
        (">", CmpOp::Gt),
        (">=", CmpOp::Ge),
    ] {
        let q = parse(&format!("SELECT Id FROM Account WHERE Name{src}'x'")).unwrap();
        assert!(
            matches!(q.filter, Some(Expr::Cmp { op: o, .. }) if o == op),
            "{src}"
        );
    }
    let q = parse(r"SELECT Id FROM Account WHERE Name = 'O\'Brien \\ \n\t\u00e9'").unwrap();
    let Some(Expr::Cmp {
        value: LiteralAt {
            lit: Literal::Str { value, .. },
            ..
        },
        ..
    }) = q.filter
    else {
        panic!()
    };
    assert_eq!(value, "O'Brien \\ \n\té");
    let e = parse(r"SELECT Id FROM Account WHERE Name = 'a\qb'").unwrap_err();
    assert_eq!(e.code, "MALFORMED_QUERY");
    assert!(
        e.message.contains(r"Illegal character sequence '\q'"),
        "{}",
        e.message
    );
    let e = parse("SELECT Id FROM Account WHERE Name = 'open").unwrap_err();
    assert_eq!(e.code, "MALFORMED_QUERY");
}

#[test]
fn parses_every_datetime_literal_form() {
    let want = parse_datetime("2024-06-25T10:00:00Z").unwrap();
    for (lit, expected) in [
        ("2024-06-25T10:00:00Z", want),
        ("2024-06-25T10:00:00.000Z", want),
        ("2024-06-25T10:00:00.123456Z", want),
        ("2024-06-25T10:00:00.999999999Z", want),
        ("2024-06-25T10:00:00+00:00", want),
        ("2024-06-25T10:00:00.000+00:00", want),
        ("2024-06-25T10:00:00+0000", want),
        ("2024-06-25T10:00:00.000+0000", want),
        ("2024-06-25T05:00:00-05:00", want),
        ("2024-06-25T12:00:00+0200", want),
    ] {
        let q = parse(&format!(
            "SELECT Id FROM Account WHERE SystemModstamp >= {lit} AND Id != null"
        ))
        .unwrap();
        let Some(Expr::And(t)) = q.filter else {
            panic!("{lit}")
        };
        assert!(
            matches!(&t[0], Expr::Cmp { value: LiteralAt { lit: Literal::DateTime(v), .. }, .. } if *v == expected),
            "{lit}: {:?}",
            t[0]
        );
    }
    let q = parse("SELECT Id FROM Opportunity WHERE CloseDate = 2024-06-25").unwrap();
    assert!(matches!(
        q.filter,
        Some(Expr::Cmp {
            value: LiteralAt {
                lit: Literal::Date(_),
                ..
            },
            ..
        })
    ));
}

#[test]
fn an_unencoded_plus_is_malformed_at_the_space() {
    let q = "SELECT Id FROM Account WHERE SystemModstamp >= 2024-06-25T10:00:00.000 00:00";
    let e = parse(q).unwrap_err();
    assert_eq!(e.code, "MALFORMED_QUERY");
    let col = q.find(".000 ").unwrap() + 5;
    assert!(
        e.message.ends_with(&format!(
            "ERROR at Row:1:Column:{col}\nno viable alternative at character ' '"
        )),
        "{}",
        e.message
    );
    // No zone at all, and a bad time.
    assert_eq!(
        parse("SELECT Id FROM Account WHERE SystemModstamp > 2024-06-25T10:00:00")
            .unwrap_err()
            .code,
        "MALFORMED_QUERY"
    );
    assert_eq!(
        parse("SELECT Id FROM Account WHERE SystemModstamp > 2024-06-25T10:00Z")
            .unwrap_err()
            .code,
        "MALFORMED_QUERY"
    );
    assert_eq!(
        parse("SELECT Id FROM Account WHERE SystemModstamp > 2024-13-25T10:00:00Z")
            .unwrap_err()
            .code,
        "MALFORMED_QUERY"
    );
}

#[test]
fn syntax_errors_carry_the_caret_block() {
    let e = parse("SELECT Id FORM Account").unwrap_err();
    assert_eq!(e.code, "MALFORMED_QUERY");
    assert_eq!(
        e.message,
        "\nSELECT Id FORM Account\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'"
    );
    let e = parse("SELECT Id FROM Account WHERE").unwrap_err();
    assert!(
        e.message
            .ends_with("ERROR at Row:1:Column:29\nunexpected token: <EOF>"),
        "{}",
        e.message
    );
    let e =
        parse("SELECT Id FROM Account WHERE Name = 'a' AND Name = 'b' OR Name = 'c'").unwrap_err();
    assert!(
        e.message.ends_with("unexpected token: 'OR'"),
        "{}",
        e.message
    );
    parse("SELECT Id FROM Account WHERE (Name = 'a' AND Name = 'b') OR Name = 'c'").unwrap();
    let e = parse("SELECT Id FROM Account WHERE Name = 'a' LIMIT -1").unwrap_err();
    assert_eq!(e.code, "MALFORMED_QUERY");
    let e = parse("SELECT Id FROM Account WHERE Name # 'a'").unwrap_err();
    assert!(
        e.message
            .ends_with("no viable alternative at character '#'"),
        "{}",
        e.message
    );
    let e = parse("SELECT Id,\nName FROM Account WHERE Nme = 'x' LIMT 5").unwrap_err();
    assert!(
        e.message
            .starts_with("\nName FROM Account WHERE Nme = 'x' LIMT 5\n"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("ERROR at Row:2:Column:35"),
        "{}",
        e.message
    );
}

#[test]
fn long_queries_show_an_excerpt_before_the_caret() {
    let fields: Vec<String> = (0..30).map(|i| format!("Field{i}__c")).collect();
    let q = format!("SELECT {} FROM Account WHERE", fields.join(", "));
    let e = parse(&q).unwrap_err();
    let lines: Vec<&str> = e.message.split('\n').collect();
    assert!(
        lines[1].len() < q.len() && q.ends_with(lines[1]),
        "{}",
        e.message
    );
    assert_eq!(
        lines[2].len(),
        lines[1].len() + 1,
        "caret sits just past the excerpt's end"
    );
    assert!(lines[3].starts_with("ERROR at Row:1:Column:"));
}

// ---- resolution errors ----

#[test]
fn unknown_names_give_salesforce_errors() {
    let f = fixture();
    let e = err(&f.org, "SELECT Id, Nme FROM Account");
    assert_eq!(e.code, "INVALID_FIELD");
    assert_eq!(
        e.message,
        "\nSELECT Id, Nme FROM Account\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nme' on entity 'Account'. If you \
         are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please \
         reference your WSDL or the describe call for the appropriate names."
    );
    let e = err(&f.org, "SELECT Id FROM Acount");
    assert_eq!(e.code, "INVALID_TYPE");
    assert!(e.message.starts_with("\nSELECT Id FROM Acount\n               ^\nERROR at Row:1:Column:16\nsObject type 'Acount' is not supported."), "{}", e.message);
    let e = err(&f.org, "SELECT Acct.Name FROM Contact");
    assert_eq!(e.code, "INVALID_FIELD");
    assert!(
        e.message
            .contains("Didn't understand relationship 'Acct' in field path."),
        "{}",
        e.message
    );
    let e = err(&f.org, "SELECT Account.Nme FROM Contact");
    assert!(
        e.message
            .contains("No such column 'Nme' on entity 'Account'"),
        "{}",
        e.message
    );
    let e = err(&f.org, "SELECT Id FROM Account WHERE Foo__c = 1");
    assert!(e
        .message
        .contains("No such column 'Foo__c' on entity 'Account'"));
    let e = err(&f.org, "SELECT Id FROM Account ORDER BY Foo__c");
    assert_eq!(e.code, "INVALID_FIELD");
}

#[test]
fn duplicate_fields_and_count_misuse_are_rejected() {
    let f = fixture();
    let e = err(&f.org, "SELECT Id, Name, name FROM Account");
    assert_eq!(e.code, "MALFORMED_QUERY");
    assert!(
        e.message
            .ends_with("ERROR at Row:1:Column:18\nduplicate field selected: Name"),
        "{}",
        e.message
    );
    let e = err(&f.org, "SELECT Account.Name, account.NAME FROM Contact");
    assert!(
        e.message.ends_with("duplicate field selected: Name"),
        "{}",
        e.message
    );
    // The same field name through a relationship is a different column.
    plan(&f.org, "SELECT Name, Account.Name FROM Contact").unwrap();
    assert_eq!(
        err(&f.org, "SELECT Id, COUNT() FROM Account").code,
        "MALFORMED_QUERY"
    );
}

#[test]
fn filterability_and_literal_types_are_checked() {
    let f = fixture();
    let e = err(&f.org, "SELECT Id FROM Invoice__c WHERE Notes__c = 'x'");
    assert_eq!(e.code, "INVALID_FIELD");
    assert!(
        e.message
            .ends_with("field 'Notes__c' can not be filtered in a query call"),
        "{}",
        e.message
    );
    let e = err(&f.org, "SELECT Id FROM Invoice__c ORDER BY notes__c");
    assert!(
        e.message
            .ends_with("field 'Notes__c' can not be sorted in a query call"),
        "{}",
        e.message
    );
    // Selecting it is fine.
    plan(&f.org, "SELECT Notes__c FROM Invoice__c").unwrap();

    let cases = [
        (
            "SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            "SystemModstamp",
            "dateTime",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE CreatedDate > 2024-01-01",
            "CreatedDate",
            "dateTime",
            false,
        ),
        (
            "SELECT Id FROM Invoice__c WHERE Issued_Date__c > '2024-01-01'",
            "Issued_Date__c",
            "date",
            false,
        ),
        (
            "SELECT Id FROM Invoice__c WHERE Issued_Date__c > 2024-01-01T00:00:00Z",
            "Issued_Date__c",
            "date",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE IsDeleted = 1",
            "IsDeleted",
            "boolean",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE IsDeleted = 'true'",
            "IsDeleted",
            "boolean",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE AnnualRevenue > '5'",
            "AnnualRevenue",
            "double",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE NumberOfEmployees > TRUE",
            "NumberOfEmployees",
            "integer",
            false,
        ),
        (
            "SELECT Id FROM Account WHERE Name = 5",
            "Name",
            "string",
            true,
        ),
        ("SELECT Id FROM Account WHERE Id = 5", "Id", "id", true),
    ];
    for (q, field, ty, quoted) in cases {
        let e = err(&f.org, q);
        assert_eq!(e.code, "INVALID_FIELD", "{q}");
        let tail = format!(
            "value of filter criterion for field '{field}' must be of type {ty} and should {}be enclosed in quotes",
            if quoted { "" } else { "not " }
        );
        assert!(e.message.ends_with(&tail), "{q}: {}", e.message);
    }
    let e = err(&f.org, "SELECT Id FROM Account WHERE Id = 'nope'");
    assert_eq!(e.code, "INVALID_QUERY_FILTER_OPERATOR");
    assert!(
        e.message.ends_with("invalid ID field: nope"),
        "{}",
        e.message
    );
    assert_eq!(
        err(&f.org, "SELECT Id FROM Account WHERE IsDeleted > FALSE").code,
        "INVALID_QUERY_FILTER_OPERATOR"
    );
    assert_eq!(
        err(
            &f.org,
            "SELECT Id FROM Account WHERE AnnualRevenue LIKE '1%'"
        )
        .code,
        "INVALID_QUERY_FILTER_OPERATOR"
    );
}

#[test]
fn offset_over_2000_is_out_of_range() {
    let f = fixture();
    let e = err(&f.org, "SELECT Id FROM Account LIMIT 10 OFFSET 2001");
    assert_eq!(e.code, "NUMBER_OUTSIDE_VALID_RANGE");
    assert_eq!(
        e.message,
        "Maximum SOQL offset allowed for apiName Account is 2000"
    );
    plan(&f.org, "SELECT Id FROM Account OFFSET 2000").unwrap();
}

// ---- evaluation ----

#[test]
fn names_are_case_insensitive_and_labels_canonical() {
    let f = fixture();
    let p = plan(
        &f.org,
        "select id, isDeleted, SystemModStamp, account.name, OWNER.name from CONTACT",
    )
    .unwrap();
    let labels: Vec<&str> = p.columns.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "Id",
            "IsDeleted",
            "SystemModstamp",
            "Account.Name",
            "Owner.Name"
        ]
    );
    assert_eq!(p.object_name(&f.org), "Contact");
    let rel = p.columns[3].via.as_ref().unwrap();
    let contact = &f.org.schema.objects[p.object];
    assert_eq!(contact.fields[rel.reference_field].name, "AccountId");
    assert_eq!(f.org.schema.objects[rel.target_object].name, "Account");
    assert_eq!(rel.name, "Account");
    assert_eq!(
        f.org.schema.objects[rel.target_object].fields[p.columns[3].field].name,
        "Name"
    );
}

#[test]
fn comparisons_follow_soql_semantics() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name = 'ACME'"),
        ["Acme"]
    );
    // != includes nulls, as SOQL does.
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Industry != 'Banking'"),
        ["beta", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Industry = null"),
        ["beta"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Industry != null"),
        ["Acme", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Industry = ''"),
        ["beta"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE AnnualRevenue > 50"),
        ["Acme", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE AnnualRevenue <= 50.5"),
        ["Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE NumberOfEmployees >= 5"),
        ["beta"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name > 'b'"),
        ["beta", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE NOT Name = 'acme'"),
        ["beta", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE (Name = 'Acme' OR Industry = 'Retail') AND NOT (AnnualRevenue < 60)"),
        ["Acme"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Invoice__c WHERE Paid__c = TRUE"),
        ["INV-1"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Invoice__c WHERE Paid__c != true"),
        ["INV-2", "inv_3%"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Issued_Date__c > 2024-06-01"
        ),
        ["INV-2"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Issued_Date__c >= 2024-06-01"
        ),
        ["INV-1", "INV-2"]
    );
}

#[test]
fn like_is_case_insensitive_with_escapes() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name LIKE 'a%'"),
        ["Acme"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name LIKE '%CORP'"),
        ["Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name LIKE '_eta'"),
        ["beta"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name LIKE '%m%'"),
        ["Acme", "Gamma Corp"]
    );
    assert_eq!(
        col(o, r"SELECT Name FROM Invoice__c WHERE Name LIKE 'inv\_%'"),
        ["inv_3%"]
    );
    assert_eq!(
        col(o, r"SELECT Name FROM Invoice__c WHERE Name LIKE '%\%'"),
        ["inv_3%"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Invoice__c WHERE Name LIKE 'inv_%'"),
        ["INV-1", "INV-2", "inv_3%"]
    );
}

#[test]
fn in_lists_match_strings_numbers_and_either_id_form() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE Name IN ('acme', 'BETA')"),
        ["Acme", "beta"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account WHERE Name NOT IN ('acme', 'BETA')"
        ),
        ["Gamma Corp"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account WHERE Industry NOT IN ('Banking')"
        ),
        ["beta", "Gamma Corp"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account WHERE NumberOfEmployees IN (5, 6)"
        ),
        ["beta"]
    );
    let q = format!(
        "SELECT Name FROM Account WHERE Id IN ('{}', '{}')",
        &f.acme[..15],
        f.gamma
    );
    assert_eq!(col(o, &q), ["Acme", "Gamma Corp"]);
    let q = format!("SELECT Name FROM Account WHERE Id = '{}'", &f.beta[..15]);
    assert_eq!(col(o, &q), ["beta"]);
    let q = format!(
        "SELECT LastName FROM Contact WHERE AccountId IN ('{}')",
        f.acme
    );
    assert_eq!(col(o, &q), ["Smith"]);
    let q = format!(
        "SELECT LastName FROM Contact WHERE AccountId NOT IN ('{}')",
        f.acme
    );
    assert_eq!(col(o, &q), ["Jones", "Orphan"]);
}

#[test]
fn id_ranges_compare_base62_bytewise() {
    let f = fixture();
    let o = &f.org;
    let q = format!("SELECT Name FROM Account WHERE Id > '{}'", f.acme);
    assert_eq!(col(o, &q), ["beta", "Gamma Corp"]);
    let q = format!(
        "SELECT Name FROM Account WHERE Id >= '{}' AND Id < '{}'",
        &f.beta[..15],
        f.gamma
    );
    assert_eq!(col(o, &q), ["beta"]);
    // Keyset paging as clients write it.
    let q = format!(
        "SELECT Name FROM Account WHERE ((LastModifiedDate = {} AND Id > '{}') OR LastModifiedDate > {}) \
         ORDER BY LastModifiedDate ASC, Id ASC LIMIT 1",
        "2000-01-01T00:00:00Z", f.acme, "2000-01-01T00:00:00Z"
    );
    assert_eq!(col(o, &q), ["Acme"]);
}

#[test]
fn multipicklists_match_sets() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Tags__c = 'export;PRIORITY'"
        ),
        ["INV-1"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Invoice__c WHERE Tags__c = 'Export'"),
        Vec::<String>::new()
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Tags__c != 'Recurring'"
        ),
        ["INV-1", "inv_3%"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Tags__c INCLUDES ('Export')"
        ),
        ["INV-1"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Tags__c INCLUDES ('Export;Recurring', 'recurring')"
        ),
        ["INV-2"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Tags__c EXCLUDES ('Export')"
        ),
        ["INV-2", "inv_3%"]
    );
}

#[test]
fn datetimes_compare_at_whole_seconds() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Paid_At__c = 2024-06-25T10:00:00.900Z"
        ),
        ["INV-1"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Paid_At__c >= 2024-06-25T10:00:00.999999Z"
        ),
        ["INV-1", "INV-2"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Paid_At__c > 2024-06-25T10:00:00.5+00:00"
        ),
        ["INV-2"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Invoice__c WHERE Paid_At__c >= 2024-06-25T05:00:00-05:00 AND Paid_At__c < 2024-06-25T12:30:00+0000"),
        ["INV-1"]
    );
    // SystemModstamp windows as airbyte and tap send them.
    let stamp =
        crate::value::format_bulk_datetime(crate::store::system_modstamp(&f.org.execute_probe()));
    let q = format!("SELECT Name FROM Account WHERE SystemModstamp >= {stamp} AND SystemModstamp < 2999-01-01T00:00:00.000+00:00");
    assert_eq!(col(o, &q), ["Acme", "beta", "Gamma Corp"]);
    let q = format!("SELECT Name FROM Account WHERE SystemModstamp > {stamp}");
    assert!(col(o, &q).is_empty());
}

#[test]
fn relative_date_literals_cover_days() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE CreatedDate = TODAY").len(),
        3
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account WHERE CreatedDate = LAST_N_DAYS:3"
        )
        .len(),
        3
    );
    assert!(col(o, "SELECT Name FROM Account WHERE CreatedDate = YESTERDAY").is_empty());
    assert!(col(o, "SELECT Name FROM Account WHERE CreatedDate > TODAY").is_empty());
    assert_eq!(
        col(o, "SELECT Name FROM Account WHERE CreatedDate < TOMORROW").len(),
        3
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Invoice__c WHERE Issued_Date__c < LAST_N_DAYS:1"
        ),
        ["INV-1", "INV-2"]
    );
}

#[test]
fn order_by_places_nulls_like_salesforce() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY Name"),
        ["Acme", "beta", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY Name DESC"),
        ["Gamma Corp", "beta", "Acme"]
    );
    // ASC defaults to NULLS FIRST, DESC to NULLS LAST.
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY Industry"),
        ["beta", "Acme", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY Industry DESC"),
        ["Gamma Corp", "Acme", "beta"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account ORDER BY Industry ASC NULLS LAST"
        ),
        ["Acme", "Gamma Corp", "beta"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account ORDER BY Industry DESC NULLS FIRST"
        ),
        ["beta", "Gamma Corp", "Acme"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account ORDER BY AnnualRevenue DESC, Name"
        ),
        ["Acme", "Gamma Corp", "beta"]
    );
    // Ties keep Id order; ORDER BY Id DESC reverses it.
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY IsDeleted"),
        ["Acme", "beta", "Gamma Corp"]
    );
    assert_eq!(
        col(o, "SELECT Name FROM Account ORDER BY Id DESC"),
        ["Gamma Corp", "beta", "Acme"]
    );
    assert_eq!(
        col(o, "SELECT LastName FROM Contact ORDER BY Account.Name DESC"),
        ["Jones", "Smith", "Orphan"]
    );
}

#[test]
fn text_ordering_is_case_insensitive_beyond_the_inline_prefix() {
    let org = Org::new(Schema::standard());
    for name in [
        "acme corporation b",
        "Acme Corporation A",
        "ACME CORPORATION C",
        "Émile",
        "émile b",
        "Zed",
        "acme",
    ] {
        create(&org, "Account", &[("Name", Value::text(name))]);
    }
    assert_eq!(
        col(&org, "SELECT Name FROM Account ORDER BY Name"),
        [
            "acme",
            "Acme Corporation A",
            "acme corporation b",
            "ACME CORPORATION C",
            "Zed",
            "Émile",
            "émile b"
        ]
    );
    assert_eq!(
        col(&org, "SELECT Name FROM Account ORDER BY Name DESC LIMIT 2"),
        ["émile b", "Émile"]
    );
    // Keys after Id decide nothing; Id DESC as a tiebreak reverses ties.
    let same = "SELECT Name FROM Account WHERE Name LIKE 'acme%' ORDER BY IsDeleted, Id DESC, Name";
    assert_eq!(
        col(&org, same),
        [
            "acme",
            "ACME CORPORATION C",
            "Acme Corporation A",
            "acme corporation b"
        ]
    );
    let p = plan(
        &org,
        "SELECT Name, Owner.Name FROM Account ORDER BY Name LIMIT 1",
    )
    .unwrap();
    let recs = p.execute(&org, false);
    org.read(|t| {
        let mut refs = Vec::new();
        p.row_value_refs(t, &recs[0], &mut refs);
        assert_eq!(refs, [&Value::text("acme"), &Value::text("Sim Admin")]);
    });
}

#[test]
fn parent_fields_resolve_through_lookups() {
    let f = fixture();
    let o = &f.org;
    let r = rows(
        o,
        "SELECT LastName, Account.Name, Owner.Name, CreatedBy.Name FROM Contact",
    );
    assert_eq!(
        r[0],
        [
            Value::text("Smith"),
            Value::text("Acme"),
            Value::text("Sim Admin"),
            Value::text("Sim Admin")
        ]
    );
    assert_eq!(r[1][1], Value::text("Gamma Corp"));
    assert_eq!(r[2][1], Value::Null);
    let r = rows(o, "SELECT Name, Account__r.Name, Account__r.Industry FROM Invoice__c WHERE Account__r.Name = 'acme'");
    assert_eq!(
        r,
        vec![vec![
            Value::text("INV-1"),
            Value::text("Acme"),
            Value::text("Banking")
        ]]
    );
    let p = plan(
        o,
        "SELECT Name, Account__r.Name FROM Invoice__c ORDER BY Name",
    )
    .unwrap();
    let recs = p.execute(o, false);
    assert_eq!(
        p.rows_values(o, &recs)[1],
        [Value::text("INV-2"), Value::Null]
    );
    // The object's own name may prefix a field.
    assert_eq!(
        col(
            o,
            "SELECT Account.Name FROM Account WHERE Account.Name = 'beta'"
        ),
        ["beta"]
    );
}

#[test]
fn query_hides_deleted_rows_and_query_all_shows_them() {
    let f = fixture();
    let o = &f.org;
    let p = plan(o, "SELECT Name FROM Account").unwrap();
    assert_eq!(p.execute(o, false).len(), 3);
    assert_eq!(p.execute(o, true).len(), 4);
    let p = plan(
        o,
        "SELECT Id, IsDeleted FROM Account WHERE isDeleted = TRUE",
    )
    .unwrap();
    assert!(p.execute(o, false).is_empty());
    let all = p.execute(o, true);
    assert_eq!(all.len(), 1);
    assert_eq!(
        p.row_values(o, &all[0]),
        [Value::text(f.delta.clone()), Value::Bool(true)]
    );
    let p = plan(o, "SELECT COUNT() FROM Account").unwrap();
    assert!(p.is_count && p.columns.is_empty());
    assert_eq!((p.count(o, false), p.count(o, true)), (3, 4));
}

#[test]
fn limit_offset_and_counts() {
    let f = fixture();
    let o = &f.org;
    assert_eq!(col(o, "SELECT Name FROM Account LIMIT 2"), ["Acme", "beta"]);
    assert_eq!(
        col(o, "SELECT Name FROM Account LIMIT 1 OFFSET 1"),
        ["beta"]
    );
    assert_eq!(
        col(
            o,
            "SELECT Name FROM Account ORDER BY Name DESC LIMIT 1 OFFSET 1"
        ),
        ["beta"]
    );
    assert!(col(o, "SELECT Name FROM Account OFFSET 5").is_empty());
    assert!(col(o, "SELECT Name FROM Account LIMIT 0").is_empty());
    let p = plan(o, "SELECT Name FROM Account ORDER BY Name LIMIT 5 OFFSET 1").unwrap();
    assert!(p.has_order_by);
    assert_eq!((p.limit, p.offset), (Some(5), Some(1)));
    assert_eq!(
        plan(o, "SELECT COUNT() FROM Account LIMIT 2")
            .unwrap()
            .count(o, false),
        2
    );
    let p = plan(o, "SELECT COUNT(Industry) FROM Account").unwrap();
    assert_eq!(p.aggregate_alias.as_deref(), Some("expr0"));
    assert_eq!(p.count(o, false), 2);
    assert_eq!(
        plan(o, "SELECT IsSandbox FROM Organization LIMIT 1")
            .unwrap()
            .execute(o, false)
            .len(),
        1
    );
}

#[test]
fn id_range_restricts_for_pk_chunking() {
    let f = fixture();
    let o = &f.org;
    let p = plan(o, "SELECT Name FROM Account").unwrap();
    let names = |p: &Plan, all| -> Vec<Value> {
        p.execute(o, all)
            .iter()
            .map(|r| p.row_values(o, r)[0].clone())
            .collect()
    };
    let chunk = p.with_id_range(Some(&f.acme), Some(&f.gamma));
    assert_eq!(
        names(&chunk, false),
        [Value::text("Acme"), Value::text("beta")]
    );
    let chunk = p.with_id_range(Some(&f.beta[..15]), None);
    assert_eq!(
        names(&chunk, true),
        [
            Value::text("beta"),
            Value::text("Gamma Corp"),
            Value::text("Delta")
        ]
    );
    let chunk = p.with_id_range(None, Some(&f.beta));
    assert_eq!(names(&chunk, false), [Value::text("Acme")]);
    // Bounds that are not this object's Ids still work, by comparison alone.
    let chunk = p.with_id_range(Some("000000000000000"), Some("zzzzzzzzzzzzzzz"));
    assert_eq!(names(&chunk, false).len(), 3);
    // Ranges intersect.
    let chunk = p
        .with_id_range(Some(&f.acme), None)
        .with_id_range(Some(&f.beta), Some(&f.delta));
    assert_eq!(
        names(&chunk, false),
        [Value::text("beta"), Value::text("Gamma Corp")]
    );
}

#[test]
fn plans_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Plan>();
}

impl Org {
    /// Any committed Account, for tests that need its stamp.
    fn execute_probe(&self) -> Record {
        plan(self, "SELECT Id FROM Account LIMIT 1")
            .unwrap()
            .execute(self, false)
            .remove(0)
    }
}
