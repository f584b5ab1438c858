/**
 * Repository and tag name patterns, shared by authorization rules (auth/)
 * and policies (policy/): `*` matches within one path component, `**` any
 * number of components; everything else is literal. `team-a/*` matches
 * `team-a/app`, not `team-a/x/y`.
 */
export function compilePattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') {
      re += '[^/]*';
    } else {
      re += c.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}
