// Package config is a node's configuration: one struct tree with the
// defaults of each role (Default), a TOML file over them (LoadFile), and
// Validate, whose errors name the setting at fault. Flags and the
// environment are applied by cmd/cocoon. Example writes a commented file
// with every setting, its default and what it means. Role, the typed enum
// of what a node does, lives here too; the switch on it lives in node.
package config
