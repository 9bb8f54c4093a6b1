package main

import (
	"fmt"
	"slices"
	"strings"
)

// bashCompletion returns a bash completion script: command words, then the
// flags of the command typed so far.
func bashCompletion() string {
	var words []string
	var cases strings.Builder
	fixed := map[string]string{
		"validate":     "--topology",
		"cluster show": "--endpoint --token --output --cacert",
		"health":       "--endpoint --token --output --cacert",
	}
	for _, name := range commandNames() {
		var fl []string
		for _, f := range commands[name].flags {
			fl = append(fl, "--"+f[0])
		}
		if commands[name].confirm != nil {
			fl = append(fl, "--yes")
		}
		fixed[name] = strings.Join(append(fl, "--endpoint", "--token", "--output", "--cacert"), " ")
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range fixed {
			if !yield(k) {
				return
			}
		}
	}) {
		words = append(words, name)
		fmt.Fprintf(&cases, "    %q) flags=%q ;;\n", name, fixed[name])
	}
	return fmt.Sprintf(`# bash completion for pgplanectl; load with: source <(pgplanectl completion bash)
_pgplanectl() {
  local cur="${COMP_WORDS[COMP_CWORD]}" typed="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    [[ ${COMP_WORDS[i]} == -* ]] && break
    typed="${typed:+$typed }${COMP_WORDS[i]}"
  done
  local commands=%q flags=""
  case "$typed" in
%s  esac
  if [[ -n $flags ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    return
  fi
  local next="" c
  while IFS= read -r c; do
    if [[ -z $typed ]]; then next+=" ${c%%%% *}"
    elif [[ $c == "$typed "* ]]; then c=${c#"$typed "}; next+=" ${c%%%% *}"; fi
  done <<< "$(tr ';' '\n' <<< "$commands")"
  COMPREPLY=($(compgen -W "$next cluster-key completion help create update show list delete" -- "$cur"))
}
complete -F _pgplanectl pgplanectl
`, strings.Join(words, ";"), cases.String())
}
