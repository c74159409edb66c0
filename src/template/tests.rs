//! The vectors of spec/dropin.md section 1(c) (D, E, X) against fixture F, in inspect JSON
//! (the engine's names; templates use go-dockerclient's). Tags are in written order (our rule,
//! Decisions T1), where the Go program reverses each input's pieces.

use super::*;
use crate::service::split_tags;

const F: &str = r#"{
  "Id": "e20f9c1a76565d62ae24a3bb877b17b862b6eab94f4e95a0e07ccf25087aaf4f",
  "Created": "2024-01-02T03:04:05Z",
  "Path": "nginx", "Args": ["-g", "daemon off;"],
  "State": {"Status": "running", "Running": true, "Paused": false, "Pid": 4242, "ExitCode": 0,
            "StartedAt": "2024-01-02T03:04:06.5Z", "FinishedAt": "0001-01-01T00:00:00Z"},
  "Image": "sha256:4f2d5d1b3c7a",
  "Name": "/web-1",
  "HostConfig": {"NetworkMode": "bridge", "CpuShares": 512, "Dns": null,
                 "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
  "Config": {
    "Hostname": "e20f9c1a7656",
    "Image": "registry.example.com/team/nginx:1.25",
    "Env": ["ENVIRONMENT=test", "SERVICE_8105_NAME=foo", "HOME=/home/foobar", "SERVICE_9404_NAME=bar"],
    "Cmd": null,
    "Labels": {"com.amazonaws.ecs.task-arn": "arn:aws:ecs:region:xxxxxxxxxxxx:task/368f4403-0ee4-4f4c-b7a5-be50c57db5cf",
               "env": "prod", "team": "core"},
    "ExposedPorts": {"80/tcp": {}}
  },
  "NetworkSettings": {
    "IPAddress": "172.17.0.5",
    "Networks": {"bridge": {"IPAddress": "172.17.0.5", "Gateway": "172.17.0.1"}},
    "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
  }
}"#;

const ALL: &str = r#"{"Additional":{"Country":"United States","Zone":"us-east-1a"},"ip":"203.0.113.7","items":[{"name":"a"},{"name":"b"}],"num":42,"quoted":"a\"b"}"#;

/// The HTTP fixture of section 1(c), as `httpGet` would return it.
fn fetch(url: &str) -> Vec<u8> {
    match url.rsplit('/').next() {
        Some("all") => ALL.as_bytes().to_vec(),
        Some("text") => b"plain,text".to_vec(),
        Some("500") => b"oops".to_vec(),
        _ => Vec::new(),
    }
}

fn render_with(src: &str, doc: &str, http: bool) -> Result<String, String> {
    let t = Template::parse(src).map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut f = fetch;
    let fetch: Option<Fetch> = if http { Some(&mut f) } else { None };
    t.render(doc.as_bytes(), fetch, &mut out)?;
    Ok(out)
}

fn render(src: &str) -> Result<String, String> {
    render_with(src, F, true)
}

const ARN: &str = "arn:aws:ecs:region:xxxxxxxxxxxx:task/368f4403-0ee4-4f4c-b7a5-be50c57db5cf";

#[test]
fn documented_examples_d1_to_d15() {
    let cases: &[(&str, &str)] = &[
        ("{{strSlice .ID 0 12}}", "e20f9c1a7656"),
        ("{{sIndex 0 .Config.Env}}", "ENVIRONMENT=test"),
        (
            r#"{{mIndex "com.amazonaws.ecs.task-arn" .Config.Labels}}"#,
            ARN,
        ),
        (r#"{{toUpper "foo"}}"#, "FOO"),
        (r#"{{toLower "FoO"}}"#, "foo"),
        (r#"{{replace -1 "=" "" "=foo="}}"#, "foo"),
        (
            r#"{{join "," .Config.Env}}"#,
            "ENVIRONMENT=test,SERVICE_8105_NAME=foo,HOME=/home/foobar,SERVICE_9404_NAME=bar",
        ),
        (
            r#"{{split "," "/proc/bus,/proc/fs,/proc/irq"}}"#,
            "[/proc/bus /proc/fs /proc/irq]",
        ),
        (
            &format!(r#"{{{{splitIndex -1 "/" "{ARN}"}}}}"#),
            "368f4403-0ee4-4f4c-b7a5-be50c57db5cf",
        ),
        (
            r#"{{matchFirstElement "^SERVICE_" .Config.Env}}"#,
            "SERVICE_8105_NAME=foo",
        ),
        (
            r#"{{matchAllElements "^SERVICE_" .Config.Env}}"#,
            "[SERVICE_8105_NAME=foo SERVICE_9404_NAME=bar]",
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "Additional::Country"}}"#,
            "United States",
        ),
        (r#"{{split "," "a,b" | sIndex 1}}"#, "b"),
        ("host-{{.Config.Hostname}},web", "host-e20f9c1a7656,web"),
    ];
    for (src, want) in cases {
        assert_eq!(render(src).as_deref(), Ok(*want), "{src}");
    }
    // D7 and D15 as tags: split on commas, in written order.
    assert_eq!(
        split_tags(&render(r#"{{join "," .Config.Env}}"#).unwrap()),
        [
            "ENVIRONMENT=test",
            "SERVICE_8105_NAME=foo",
            "HOME=/home/foobar",
            "SERVICE_9404_NAME=bar"
        ]
    );
    assert_eq!(
        split_tags(&render("host-{{.Config.Hostname}},web").unwrap()),
        ["host-e20f9c1a7656", "web"]
    );
    // D12: the bare []byte prints as decimal bytes.
    assert_eq!(
        render(r#"{{httpGet "http://127.0.0.1:1/text"}}"#).unwrap(),
        "[112 108 97 105 110 44 116 101 120 116]"
    );
}

#[test]
fn behaviour_vectors_e1_to_e24() {
    let cases: &[(&str, &str)] = &[
        ("{{.Name}}", "/web-1"),
        ("{{strSlice .Name 1}}", "web-1"),
        (
            r#"{{.Config.Image | split ":" | sIndex 0}}"#,
            "registry.example.com/team/nginx",
        ),
        (
            "env-{{.Config.Labels.env}},team-{{.Config.Labels.team}}",
            "env-prod,team-core",
        ),
        ("{{.Config.Labels.missing}}", "<no value>"),
        (r#"{{index .Config.Labels "missing"}}"#, ""),
        (r#"{{mIndex "missing" .Config.Labels}}"#, ""),
        (
            r#"{{index .Config.Labels "com.amazonaws.ecs.task-arn" | splitIndex -1 "/"}}"#,
            "368f4403-0ee4-4f4c-b7a5-be50c57db5cf",
        ),
        (
            "{{range $p, $b := .NetworkSettings.Ports}}{{$p}}->{{(index $b 0).HostPort}}{{end}}",
            "80/tcp->8080",
        ),
        (
            "{{.NetworkSettings.Networks.bridge.IPAddress}}",
            "172.17.0.5",
        ),
        (
            r#"{{printf "%s-%s" .Config.Hostname .Config.Labels.env}}"#,
            "e20f9c1a7656-prod",
        ),
        (
            r#"{{if eq .Config.Labels.env "prod"}}production{{else}}other{{end}}"#,
            "production",
        ),
        (
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}},{{end}}",
            &format!("com.amazonaws.ecs.task-arn={ARN},env=prod,team=core,"),
        ),
        ("{{sIndex -1 .Config.Env}}", "SERVICE_9404_NAME=bar"),
        ("{{sIndex 99 .Config.Env}}", "SERVICE_9404_NAME=bar"),
        ("{{sIndex -99 .Config.Env}}", "ENVIRONMENT=test"),
        (r#"{{strSlice "abcdef" 4 2}}"#, "ef"),
        (r#"{{strSlice "abcdef" 1 10}}"#, "abcdef"),
        (r#"{{strSlice "abcdef" 3 3}}"#, ""),
        (r#"{{strSlice "abc" 1 2 3}}"#, "abc"),
        (r#"{{splitIndex 7 "/" "a/b/c"}}"#, "c"),
        (r#"{{splitIndex -7 "/" "a/b/c"}}"#, "a"),
        (r#"{{splitIndex 0 "," ""}}"#, ""),
        (
            r#"{{matchAllElements "^SERVICE_" .Config.Env | join ";"}}"#,
            "SERVICE_8105_NAME=foo;SERVICE_9404_NAME=bar",
        ),
        (r#"{{matchAllElements "^NOPE" .Config.Env}}"#, "[]"),
        (
            r#"{{with $j := httpGet "http://127.0.0.1:1/all"}}{{jsonParse $j "ip"}}-{{jsonParse $j "Additional::Zone"}}{{end}}"#,
            "203.0.113.7-us-east-1a",
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "items::[1]::name"}}"#,
            "b",
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "num"}}"#,
            "42",
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "quoted"}}"#,
            r#"a\"b"#,
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "Additional"}}"#,
            r#"{"Country":"United States","Zone":"us-east-1a"}"#,
        ),
        (
            r#"{{httpGet "http://127.0.0.1:1/text" | printf "%s"}}"#,
            "plain,text",
        ),
        (
            r#"{{jsonParse (httpGet "http://127.0.0.1:1/500") "a"}}"#,
            "",
        ),
        (
            r#"{{httpGet "http://127.0.0.1:1/refused" | printf "%s"}}"#,
            "",
        ),
        ("static1,static2", "static1,static2"),
        ("{{slice .ID 0 12}}", "e20f9c1a7656"),
        ("{{.Node}}", "<nil>"),
        ("{{.Config.Healthcheck}}", "<nil>"),
        ("{{.Config.Cmd}}", "[]"),
    ];
    for (src, want) in cases {
        assert_eq!(render(src).as_deref(), Ok(*want), "{src}");
    }
    // E17: an empty match list is one tag `[]`, as in Go; E21: empty renderings are no tag.
    assert_eq!(
        split_tags(&render(r#"{{matchAllElements "^NOPE" .Config.Env}}"#).unwrap()),
        ["[]"]
    );
    assert!(split_tags(&render(r#"{{index .Config.Labels "missing"}}"#).unwrap()).is_empty());
    // E19's last case splits on its comma; E22's escaped comma stays one tag.
    assert_eq!(
        split_tags(
            &render(r#"{{jsonParse (httpGet "http://127.0.0.1:1/all") "Additional"}}"#).unwrap()
        ),
        [r#"{"Country":"United States""#, r#""Zone":"us-east-1a"}"#]
    );
    assert_eq!(split_tags(r"a\,b,c"), ["a,b", "c"]);
}

#[test]
fn error_vectors_x1_to_x14() {
    // Parse errors (X1-X3), and what we do not support (T3), name the position.
    for (src, msg) in [
        ("{{.Name", "template: tags:1:8: unclosed action"),
        (
            "{{foo}}",
            "template: tags:1:3: function \"foo\" not defined",
        ),
        (
            "{{.Config.Labels.com.amazonaws.ecs.task-arn}}",
            "template: tags:1:40: bad character U+002D '-'",
        ),
        (
            "{{template \"tags\"}}",
            "template: tags:1:3: {{template}} is not supported",
        ),
        (
            "{{define \"x\"}}{{end}}",
            "template: tags:1:3: {{define}} is not supported",
        ),
        (
            "{{call .X}}",
            "template: tags:1:3: function \"call\" is not supported",
        ),
        (
            "{{if .Name}}x",
            "template: tags:1:3: unexpected EOF: if has no {{end}}",
        ),
        ("{{$x}}", "template: tags:1:3: undefined variable \"$x\""),
    ] {
        assert_eq!(
            Template::parse(src).map_err(|e| e.to_string()),
            Err(msg.to_string()),
            "{src}"
        );
    }
    // Execution errors (X4-X14; X13 is a parse error here): never a panic.
    for (src, want) in [
        ("{{.Id}}", "can't evaluate field Id"),
        (
            "{{sIndex 0 .Config.Cmd}}",
            "error calling sIndex: runtime error: index out of range [-1]",
        ),
        (
            r#"{{matchFirstElement "(" .Config.Env}}"#,
            "error calling matchFirstElement: error parsing regexp: missing closing ): `(`",
        ),
        (
            r#"{{strSlice "abcdef" -1}}"#,
            "error calling strSlice: runtime error: slice bounds out of range [-1:]",
        ),
        (
            r#"{{index .NetworkSettings.Ports "80/tcp"}}"#,
            "error calling index: value has type string; should be docker.Port",
        ),
        (
            "{{toUpper .Config.Labels.missing}}",
            "error calling toUpper: invalid value; expected string",
        ),
        (
            r#"{{httpGet "http://127.0.0.1:1/all" | jsonParse "ip"}}"#,
            "error calling jsonParse: wrong type for value; expected []uint8; got string",
        ),
        (
            "{{.Config.Hostname | strSlice 0 4}}",
            "error calling strSlice: expected string; found 0",
        ),
        (
            "{{.Node.Name}}",
            "nil pointer evaluating *docker.SwarmNode.Name",
        ),
        (
            r#"{{splitIndex 0 "" ""}}"#,
            "error calling splitIndex: runtime error: index out of range [-1]",
        ),
    ] {
        let got = render(src).expect_err(src);
        assert!(got.contains(want), "{src}: {got}");
    }
}

#[test]
fn syntax_of_t3() {
    let cases: &[(&str, &str)] = &[
        ("{{/* a comment */}}x", "x"),
        ("a  {{- .Config.Labels.env -}}  b", "aprodb"),
        ("{{- /* c */ -}} x", "x"),
        (r#"{{$x := "a"}}{{$x = "b"}}{{$x}}"#, "b"),
        (
            "{{if .Config.Labels.nope}}1{{else if .Config.Labels.env}}2{{else}}3{{end}}",
            "2",
        ),
        ("{{with .Config.Labels.nope}}1{{else}}2{{end}}", "2"),
        ("{{range .Config.Cmd}}x{{else}}empty{{end}}", "empty"),
        (
            "{{range $i, $e := .Config.Env}}{{if lt $i 2}}{{$i}}{{end}}{{end}}",
            "01",
        ),
        (
            "{{len .Config.Env}} {{len .Config.Labels}} {{len .Name}}",
            "4 3 6",
        ),
        (r#"{{index .Config.Env 1}}"#, "SERVICE_8105_NAME=foo"),
        (r#"{{index .Config.Labels "env"}}"#, "prod"),
        (r#"{{slice .Name 1 4}}"#, "web"),
        (r#"{{print "a" 1 2 "b"}}"#, "a1 2b"),
        (
            r#"{{printf "%5s|%-4d|%03d|%q|%v" "ab" 7 -5 "x\"y" .State.Running}}"#,
            "   ab|7   |-05|\"x\\\"y\"|true",
        ),
        (r#"{{printf "%s %d"}}"#, "%!s(MISSING) %!d(MISSING)"),
        (r#"{{printf "%d" "x"}}"#, "%!d(string=x)"),
        (r#"{{urlquery "a b&c"}}"#, "a+b%26c"),
        (
            r#"{{and 1 0 "x"}} {{or 0 "" "y"}} {{not true}}"#,
            "0 y false",
        ),
        (
            r#"{{if and .State.Running (eq .State.Pid 4242)}}up{{end}}"#,
            "up",
        ),
        (
            r#"{{eq .Config.Labels.env "dev" "prod"}} {{ne 1 2}} {{ge 3 3}} {{gt "b" "a"}}"#,
            "true true true true",
        ),
        ("{{.Created}}", "2024-01-02 03:04:05 +0000 UTC"),
        ("{{.State.StartedAt}}", "2024-01-02 03:04:06.5 +0000 UTC"),
        ("{{.HostConfig.CPUShares}} {{.HostConfig.DNS}}", "512 []"),
        (
            r#"{{(index .NetworkSettings.Networks "bridge").Gateway}}"#,
            "172.17.0.1",
        ),
        ("{{.Config.ExposedPorts}}", "map[80/tcp:{}]"),
        ("{{.Config.Labels.env | toUpper | printf \"%s!\"}}", "PROD!"),
        ("{{`raw\\n`}}", "raw\\n"),
        ("{{'a'}} {{0x10}} {{-3}}", "97 16 -3"),
        (r#"{{toUpper "straße"}}"#, "STRAßE"),
        (
            r#"{{replace 1 "a" "b" "aaa"}} {{replace 0 "a" "b" "aaa"}}"#,
            "baa aaa",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(render(src).as_deref(), Ok(*want), "{src}");
    }
}

#[test]
fn bounds_and_container_templates() {
    // httpGet without a transport (a container's SERVICE_TAGS): an error, no request.
    let err = render_with(r#"{{httpGet "http://127.0.0.1:1/all"}}"#, F, false).unwrap_err();
    assert!(err.contains("httpGet is only allowed in -tags"), "{err}");
    // Output is capped at 4 KiB, range at 10,000 iterations.
    let long = render(
        r#"{{range .Config.Env}}{{printf "%300s" .}}{{end}}{{range .Config.Env}}{{printf "%900s" .}}{{end}}{{range .Config.Env}}{{printf "%900s" .}}{{end}}"#,
    );
    assert!(long.unwrap_err().contains("output longer than 4096"));
    let many = format!(
        r#"{{{{range split "" "{}"}}}}{{{{range split "" "{}"}}}}{{{{end}}}}{{{{end}}}}"#,
        "x".repeat(200),
        "y".repeat(200)
    );
    assert!(render(&many)
        .unwrap_err()
        .contains("more than 10000 range iterations"));
    // Nesting is capped at parse time.
    assert!(Template::parse("{{(1)}}").is_ok());
    let deep = format!("{{{{{}1{}}}}}", "(".repeat(100), ")".repeat(100));
    assert!(Template::parse(&deep)
        .unwrap_err()
        .to_string()
        .contains("nested too deeply"));
    // A document that is not JSON is an error, not a panic.
    assert!(render_with("{{.Name}}", "not json", false).is_err());
}

#[test]
fn the_cache_parses_each_source_once() {
    let a = cached("{{.Name}}-x");
    let b = cached("{{.Name}}-x");
    assert!(Rc::ptr_eq(&a, &b));
    assert!(cached("{{.Name").is_err());
}

/// Go's own answers: tests/data/template-go-vectors.jsonl holds 884 templates run through Go
/// 1.19's text/template over go-dockerclient v1.2.0's types decoded from `F` and from Docker
/// 28.5's inspect, with the 13 helpers copied from gliderlabs master. Each must render as Go
/// rendered it, or fail where Go failed; except the lines Decisions T3 makes errors on
/// purpose (`t3`), those that print the clock (`now`) or a slice's spare capacity (`cap`), and
/// the differences listed in [`GO_DIFFERENCES`] with their reason.
#[test]
fn against_go_text_template() {
    const VECTORS: &str = include_str!("../../tests/data/template-go-vectors.jsonl");
    const DOC28: &str = include_str!("../../tests/data/inspect-engine-28.5.json");
    let mut mismatches = Vec::new();
    let (mut same, mut skipped) = (0, 0);
    for line in VECTORS.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let flag = |k: &str| v[k] == serde_json::Value::Bool(true);
        if flag("t3") || flag("now") || flag("cap") || v.get("out_hex").is_some() {
            skipped += 1;
            continue;
        }
        let src = v["template"].as_str().unwrap();
        let doc = if v["doc"] == "F" { F } else { DOC28 };
        let ours = render_with(src, doc, true);
        let agree = match (v.get("out").and_then(|o| o.as_str()), &ours) {
            (Some(want), Ok(got)) => want == got,
            (None, Err(_)) => true,
            _ => false,
        };
        if agree {
            same += 1;
        } else if !GO_DIFFERENCES.iter().any(|(t, _)| *t == src) {
            mismatches.push(format!(
                "{src}\n    go:   {}\n    ours: {ours:?}",
                v.get("out")
                    .map_or_else(|| format!("error {}", v["err"]), |o| o.to_string())
            ));
        }
    }
    println!(
        "{same} as Go, {skipped} skipped, {} listed differences",
        GO_DIFFERENCES.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} differ from Go:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Where we render differently from Go on purpose, or where Go's answer comes from its types
/// rather than the document: (template, why).
const GO_DIFFERENCES: &[(&str, &str)] = &[
    (
        r#"{{printf "%.2f" 2}}"#,
        "fmt's precision on a bad verb for an int (`%!f(int=02)`) is not copied",
    ),
    (
        r#"{{.Created.Format "2006-01-02"}}"#,
        "methods with arguments are not supported (an error)",
    ),
    (
        r#"{{.Created.Format "2006"}}"#,
        "methods with arguments are not supported (an error)",
    ),
    (
        "{{.NetworkSettings.PortMappingAPI}}",
        "go-dockerclient's PortMappingAPI method is not supported (an error)",
    ),
    (
        r#"{{matchFirstElement "\\pL+=test" .Config.Env}}"#,
        "Unicode classes (\\p) are not supported by our RE2 subset: an error",
    ),
    (
        "{{.Name |}}",
        "a pipeline ending in `|` is a parse error here (Go 1.19 accepts it by accident)",
    ),
];

/// What a container's label could try: values that double, a huge replace, a regular
/// expression over a long list in a long loop, a time with a non-ASCII zone. Each ends in an
/// error (or renders), in bounded memory and time, never a panic.
#[test]
fn hostile_templates_are_bounded() {
    let doubling =
        r#"{{$a := "x"}}{{range split "" (printf "%64s" "")}}{{$a = print $a $a}}{{end}}"#;
    assert!(render(doubling)
        .unwrap_err()
        .contains("value larger than 64 KiB"));
    let square = r#"{{$a := printf "%4000s" ""}}{{replace -1 "" $a $a}}"#;
    assert!(render(square)
        .unwrap_err()
        .contains("value larger than 64 KiB"));
    let joined = r#"{{join (printf "%4000s" "") (split "" (printf "%4000s" ""))}}"#;
    assert!(render(joined)
        .unwrap_err()
        .contains("value larger than 64 KiB"));
    let t0 = std::time::Instant::now();
    let regex = r#"{{$l := split "" (printf "%4000s" "")}}{{range $l}}{{range $l}}{{matchAllElements "(a|b|c|d|e|f|g|h)*z" $l}}{{end}}{{end}}"#;
    assert!(render(regex).unwrap_err().contains("MiB of work"));
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
    let doc = F.replace("2024-01-02T03:04:05Z", r"2024-01-02T03:04:05+a\u00e9bc");
    assert!(render_with("{{.Created}}", &doc, false).is_ok());
    let doc = F.replace("2024-01-02T03:04:05Z", "2024-01-02T03:04:05+aébc");
    assert!(render_with("{{.Created}}|{{.Created.Unix}}", &doc, false).is_ok());
}

/// Absent fields share one `null`: a remembered lookup on one must not answer for another.
#[test]
fn zero_values_are_not_mixed_up() {
    let doc = F.replace(r#""Labels": {"#, r#""Labels": null, "X": {"#);
    assert_eq!(
        render_with(
            "{{.Config.Labels.Status}}|{{.State.Health.Status}}|{{.HostConfig.RestartPolicy.Name}}",
            &doc,
            false
        ),
        Ok("<no value>||".to_string())
    );
}
