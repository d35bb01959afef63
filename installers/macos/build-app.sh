#!/usr/bin/env bash
# Builds Sluice.app and Sluice-VERSION.dmg on macOS: release binaries (this Mac's
# architecture, or both with --universal), Info.plist from the template next to this
# script, the icon from assets/, a code signature, and a compressed disk image with an
# Applications link. Writes target/macos/Sluice.app and target/macos/Sluice-VERSION.dmg.
#
# Usage: installers/macos/build-app.sh [--universal] [--with-sluiced] [--no-build] [--no-dmg]
#   --universal     one binary for Apple silicon and Intel (needs both rustup targets)
#   --with-sluiced  also put the sluiced daemon in Sluice.app/Contents/MacOS
#   --no-build      bundle the binaries already built
#   --no-dmg        stop after the bundle (the only part that works off macOS)
# Environment:
#   SLUICE_CODESIGN_IDENTITY  "Developer ID Application: NAME (TEAMID)" signs for
#                             distribution with the hardened runtime; unset, ad hoc
#   SLUICE_NOTARY_PROFILE     a `xcrun notarytool store-credentials` profile: notarize
#                             and staple the .dmg
#   SLUICE_BIN_DIR            where the binaries are (default: the cargo target directory's
#                             release folder); SLUICE_OUT_DIR where to write (target/macos)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo=${CARGO:-cargo}

universal=0 with_sluiced=0 build=1 dmg=1
for arg in "$@"; do
  case $arg in
    --universal) universal=1 ;;
    --with-sluiced) with_sluiced=1 ;;
    --no-build) build=0 ;;
    --no-dmg) dmg=0 ;;
    *) echo "usage: installers/macos/build-app.sh [--universal] [--with-sluiced] [--no-build] [--no-dmg]" >&2; exit 2 ;;
  esac
done
if [ "$(uname -s)" != Darwin ] && { [ "$build" = 1 ] || [ "$dmg" = 1 ]; }; then
  echo "build-app.sh: building and making the .dmg need macOS (off macOS: --no-build --no-dmg)" >&2
  exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
target=$("$cargo" metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bins=(sluice)
packages=(-p sluice)
if [ "$with_sluiced" = 1 ]; then
  bins+=(sluiced)
  packages+=(-p sluice-engine)
fi

bin_dir=${SLUICE_BIN_DIR:-$target/release}
[ "$universal" = 0 ] || bin_dir=${SLUICE_BIN_DIR:-$target/universal/release}
if [ "$build" = 1 ]; then
  if [ "$universal" = 1 ]; then
    # One build per architecture, then lipo glues each program's two halves together.
    mkdir -p "$bin_dir"
    for triple in aarch64-apple-darwin x86_64-apple-darwin; do
      "$cargo" build --release --locked "${packages[@]}" --bins --target "$triple"
    done
    for bin in "${bins[@]}"; do
      lipo -create -output "$bin_dir/$bin" \
        "$target/aarch64-apple-darwin/release/$bin" "$target/x86_64-apple-darwin/release/$bin"
    done
  else
    "$cargo" build --release --locked "${packages[@]}" --bins
  fi
fi

out=${SLUICE_OUT_DIR:-$target/macos}
app="$out/Sluice.app"
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
sed "s/@VERSION@/$version/g" installers/macos/Info.plist >"$app/Contents/Info.plist"
printf 'APPL????' >"$app/Contents/PkgInfo"
cp assets/icons/Sluice.icns "$app/Contents/Resources/Sluice.icns"
for bin in "${bins[@]}"; do
  install -m 0755 "$bin_dir/$bin" "$app/Contents/MacOS/$bin"
done

# Sign the inner programs first, then the bundle. Apple silicon runs nothing unsigned; an
# ad hoc signature runs on this Mac, a Developer ID one anywhere once notarized.
if command -v codesign >/dev/null; then
  identity=${SLUICE_CODESIGN_IDENTITY:--}
  sign=(codesign --force --sign "$identity")
  [ "$identity" = - ] || sign+=(--options runtime --timestamp)
  for bin in "${bins[@]}"; do
    [ "$bin" = sluice ] || "${sign[@]}" "$app/Contents/MacOS/$bin"
  done
  "${sign[@]}" "$app"
  codesign --verify --strict --verbose=2 "$app"
else
  echo "build-app.sh: codesign not found: the bundle is unsigned" >&2
fi
echo "$app"
[ "$dmg" = 1 ] || exit 0

# The disk image: the app and a link to /Applications to drag it onto.
dmg_file="$out/Sluice-$version.dmg"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/"
ln -s /Applications "$staging/Applications"
hdiutil create -volname "Sluice $version" -srcfolder "$staging" -fs HFS+ -format UDZO \
  -ov "$dmg_file" >&2
if [ -n "${SLUICE_CODESIGN_IDENTITY:-}" ]; then
  codesign --force --sign "$SLUICE_CODESIGN_IDENTITY" --timestamp "$dmg_file"
fi
if [ -n "${SLUICE_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$dmg_file" --keychain-profile "$SLUICE_NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg_file"
fi
echo "$dmg_file"
